import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, claimOutput, forceOption, interruptOnSignals, logger, setup, type ArgsOf, computeOptions } from '../common.ts';
import { PplInterrupted } from '../../eval/ppl/evaluate.ts';
import { defaultPplOut, runPerplexityEval } from '../../eval/ppl/run.ts';
import { progress, type Progress } from '../../runtime/progress.ts';
import { UserError } from '../../runtime/errors.ts';

const DEFINITION = `Perplexity as transformers' strided sliding-window recipe computes it (the metric ShortGPT, SLEB, LaCo and CoMe report on WikiText-2):
the corpus is tokenized as one sequence (BOS first, as tokenizer(text) does); windows of --seq-len tokens start every --stride tokens until one reaches the end;
each window scores the tokens after the previous window's end (the first window: all but its first token), the rest of the window being their context,
so every scored token is scored once. ppl = exp(Σ −log p(token | context) / number of scored tokens): token-weighted, summed in float64
(the recipe's own sum weights each later window by one token fewer than its loss averages; mka counts the tokens exactly).`;

const pplOptions = (y: Argv<GlobalArgs>) => forceOption(computeOptions(y))
  .usage(`$0 eval ppl --model DIR (--text FILE | --data DATASET) [--seq-len N] [--stride S]\n\n${DEFINITION}`)
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('text', { type: 'string', describe: 'UTF-8 text file, evaluated as one token sequence (e.g. WikiText-2 test rows joined by blank lines)' })
  .option('data', { type: 'string', describe: 'hub text dataset instead of --text: its split\'s "text" rows joined by blank lines, as the WikiText-2 recipe' })
  .option('subset', { type: 'string', describe: 'with --data: the dataset\'s subset, e.g. wikitext-2-raw-v1 (needed when several have the split)' })
  .option('split', { type: 'string', default: 'test', describe: 'with --data: the split' })
  .option('seq-len', { type: 'number', describe: 'window length in tokens (default 2048, or the model\'s context if shorter)' })
  .option('stride', { type: 'number', describe: 'tokens between window starts (default --seq-len: disjoint windows; smaller gives each scored token more context)' })
  .option('out', { type: 'string', describe: 'results directory (default results/ppl/<model>-<text>); rerun to resume' })
  .option('fresh', { type: 'boolean', default: false, describe: 'discard earlier results in the results directory' })
  .option('streaming', { type: 'boolean', default: false, describe: 'one decoder layer in memory at a time (read from disk on every forward pass)' })
  .example('$0 eval ppl --model models/demo --text wiki.test.raw --seq-len 1024 --stride 512', '')
  .example('$0 eval ppl --model meta-llama/Llama-2-7b-hf --data Salesforce/wikitext --subset wikitext-2-raw-v1', '');

export const pplCommand: CommandModule<GlobalArgs, ArgsOf<typeof pplOptions>> = {
  command: 'ppl',
  describe: 'Perplexity on a text corpus (strided sliding windows, token-weighted); resumable',
  builder: pplOptions,
  handler: async (a) => {
    const text = a.text;
    if (!text) throw new UserError('eval ppl: give the corpus with --text FILE or --data DATASET');
    const out = a.out ?? defaultPplOut(a.model, text);
    const release = claimOutput(out, 'eval ppl', 'ppl-results', a, text);
    await setup(a);
    const log = logger(a);
    const stop = interruptOnSignals(log, 'window');
    let bar: Progress | null = null;
    try {
      const r = await runPerplexityEval({
        model: a.model, text, seqLen: a['seq-len'], stride: a.stride, out, fresh: a.fresh, streaming: a.streaming, signal: stop.signal,
        onProgress: (p) => {
          bar ??= progress('ppl', p.toCompute, { unit: 'windows', quiet: a.quiet });
          bar.tick(1, `| window ${p.windows}/${p.windowsTotal}`);
        },
      });
      (bar as Progress | null)?.done();
      const s = r.summary;
      log(`${s.windows} windows of ${s.seq_len} tokens, stride ${s.stride}${r.resumedWindows ? `, ${r.resumedWindows} loaded from an earlier run` : ''}; results in ${r.out}`);
      if (a.json) process.stdout.write(JSON.stringify(s) + '\n');
      else process.stdout.write(`perplexity ${s.ppl.toFixed(4)} (mean NLL ${s.mean_nll.toFixed(6)} nats over ${s.tokens_scored} tokens)\n`);
    } catch (e) {
      if (!(e instanceof PplInterrupted)) throw e;
      (bar as Progress | null)?.done();
      process.stderr.write(`mka: interrupted; ${e.windowsDone} of ${e.windowsTotal} windows are saved: run the same command again to resume\n`);
      process.exit(130);
    } finally {
      release();
      stop.dispose();
    }
  },
};
