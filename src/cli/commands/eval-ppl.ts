import { type GlobalArgs, FORCE_DIR, claimOutput, runResumable, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { defineCommand } from '../options.ts';
import { flag, option } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { progress, type Progress } from '../../runtime/progress.ts';
import { MODEL, REVISION, STREAMING } from '../../model/options.ts';
import { FRESH } from '../../eval/mmlu/options.ts';
import { PPL_DATASET, PPL_SPLIT, PPL_SUBSET, PPL_TEXT, SEQ_LEN, STRIDE } from '../../eval/ppl/options.ts';

const DEFINITION = `Perplexity as transformers' strided sliding-window recipe computes it (the metric ShortGPT, SLEB, LaCo and CoMe report on WikiText-2):
the corpus is tokenized as one sequence (BOS first, as tokenizer(text) does); windows of --seq-len tokens start every --stride tokens until one reaches the end;
each window scores the tokens after the previous window's end (the first window: all but its first token), the rest of the window being their context,
so every scored token is scored once. ppl = exp(Σ −log p(token | context) / number of scored tokens): token-weighted, summed in float64
(the recipe's own sum weights each later window by one token fewer than its loss averages; mka counts the tokens exactly).`;

const OUT = option({ ...OUT_SPEC, help: 'results directory (default results/ppl/<model>-<text>); rerun to resume' });

export const pplCommand = defineCommand({
  command: 'ppl',
  describe: 'Perplexity on a text corpus (strided sliding windows, token-weighted); resumable',
  usage: `$0 eval ppl --model DIR (--text FILE | --data DATASET) [--seq-len N] [--stride S]\n\n${DEFINITION}`,
  options: [...COMPUTE_OPTIONS, MODEL, REVISION, PPL_TEXT, PPL_DATASET, PPL_SUBSET, PPL_SPLIT, SEQ_LEN, STRIDE, OUT, FRESH, STREAMING, FORCE_DIR],
  conflicts: [[PPL_TEXT, PPL_DATASET]],
  examples: [
    ['$0 eval ppl --model models/demo --text wiki.test.raw --seq-len 1024 --stride 512', ''],
    ['$0 eval ppl --model meta-llama/Llama-2-7b-hf --data Salesforce/wikitext --subset wikitext-2-raw-v1', ''],
  ],
  check: (v) => {
    if (v.text === undefined && v.dataset === undefined) throw new UserError(`eval ppl: give the corpus with ${flag(PPL_TEXT)} FILE or ${flag(PPL_DATASET)} DATASET`);
  },
  run: async (v, ctx) => {
    // a hub text dataset becomes the corpus file it is read as (its split's rows joined by blank lines)
    const text = v.text ?? await (await import('../../hub/text.ts')).resolveTextDataset(v.dataset!, { quiet: ctx.quiet, log: ctx.log, subset: v.subset, split: v.split });
    const { PplInterrupted } = await import('../../eval/ppl/evaluate.ts');
    const { defaultPplOut, runPerplexityEval } = await import('../../eval/ppl/run.ts');
    const out = v.out ?? defaultPplOut(v.model, text);
    const release = claimOutput(out, 'eval ppl', 'ppl-results', v.force, [...ctx.inputs, text]);
    await setup({ ...v, quiet: ctx.quiet });
    let bar: Progress | null = null;
    const saved = (e: unknown) => {
      if (!(e instanceof PplInterrupted)) return null;
      (bar as Progress | null)?.done();
      return `${e.windowsDone} of ${e.windowsTotal} windows are saved`;
    };
    await runResumable(ctx, 'window', release, saved, async (signal) => {
      const r = await runPerplexityEval({
        model: v.model, text, seqLen: v.seqLen, stride: v.stride, out, fresh: v.fresh, streaming: v.streaming, signal,
        onProgress: (p) => {
          bar ??= progress('ppl', p.toCompute, { unit: 'windows', quiet: ctx.quiet });
          bar.tick(1, `| window ${p.windows}/${p.windowsTotal}`);
        },
      });
      (bar as Progress | null)?.done();
      const s = r.summary;
      ctx.log(`${s.windows} windows of ${s.seq_len} tokens, stride ${s.stride}${r.resumedWindows ? `, ${r.resumedWindows} loaded from an earlier run` : ''}; results in ${r.out}`);
      if (ctx.json) process.stdout.write(JSON.stringify(s) + '\n');
      else process.stdout.write(`perplexity ${s.ppl.toFixed(4)} (mean NLL ${s.mean_nll.toFixed(6)} nats over ${s.tokens_scored} tokens)\n`);
    });
  },
});
