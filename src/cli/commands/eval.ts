import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, claimFile, claimOutput, forceOption, interruptOnSignals, logger, setup, type ArgsOf, computeOptions } from '../common.ts';
import { EvaluationInterrupted } from '../../eval/mmlu/evaluate.ts';
import { defaultMmluOut, runMmluEval } from '../../eval/mmlu/run.ts';
import { formatSummaryTable } from '../../eval/mmlu/results.ts';
import { QUANT_SCHEMES, type QuantScheme } from '../../weights/quantize.ts';
import { progress, type Progress } from '../../runtime/progress.ts';
import type { AnswerTokens } from '../../eval/mmlu/question-plan.ts';
import { PROTOCOLS, protocolSettings, type Protocol } from '../../compress/methods/protocol.ts';
import { pplCommand } from './eval-ppl.ts';
import { bosUnderAddBosTokenFalse, loadTokenizer } from '../../tokenizer/tokenizer.ts';
import { OUTPUT_FILES } from '../../io/output-dir.ts';

const fmtSeconds = (s: number) => (s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

const mmluOptions = (y: Argv<GlobalArgs>) => forceOption(computeOptions(y))
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('data', { type: 'string', demandOption: true, describe: 'MMLU directory (dev/ and test/ CSV files)' })
  .option('ntrain', { type: 'number', default: 5, describe: 'few-shot examples per prompt (dropped from the end when a prompt is too long)' })
  .option('subjects', { type: 'string', describe: 'comma-separated subjects (default: all)' })
  .option('limit', { type: 'number', describe: 'first N test questions per subject (quick runs)' })
  .option('out', { type: 'string', describe: 'results directory (default results/mmlu/<model name>); rerun to resume' })
  .option('batch-size', { type: 'number', default: 16, describe: 'questions per forward pass on a cached prefix' })
  .option('naive', { type: 'boolean', default: false, describe: 'no prefix cache or batching: each full prompt alone (reference path)' })
  .option('reference-model', { type: 'string', describe: 'uncompressed model: adds top-1 agreement and KL of the answer distribution' })
  .option('answer-tokens', { choices: ['letter', 'space'] as const, default: 'letter' as AnswerTokens, describe: 'answer token of a letter: last token of "A" (as the paper) or of " A"' })
  .option('bos', { type: 'boolean', describe: 'prompts begin with BOS as the tokenizer adds it (default, as Hendrycks); --no-bos: never (add_bos_token=False, the paper\'s released code)' })
  .option('protocol', { choices: PROTOCOLS, default: 'mka' as Protocol, describe: 'released: score as the paper\'s released code (add_bos_token=False: no BOS for Llama 2/Mistral tokenizers, BOS kept for Llama 3\'s, which ignores the flag; --bos/--no-bos override)' })
  .option('quantize', { choices: QUANT_SCHEMES, default: 'none' as QuantScheme, describe: 'evaluate with the weights rounded as `export --quantize` stores them' })
  .option('dump-prompts', { type: 'string', describe: 'write every prompt as fed to the model to this JSONL file' })
  .option('dry-run', { type: 'boolean', default: false, describe: 'build and tokenize the prompts, report counts and a time estimate; run no evaluation' })
  .option('fresh', { type: 'boolean', default: false, describe: 'discard earlier results in the results directory' })
  .option('streaming', { type: 'boolean', default: false, describe: 'one decoder layer in memory at a time (read from disk on every forward pass)' })
  .example('$0 eval mmlu --model models/demo --data data/demo-mmlu', '')
  .example('$0 eval mmlu --model out/merged --data ../shared/data/mmlu --reference-model models/base --limit 20', '')
  .example('$0 eval mmlu --model out/merged --data ../shared/data/mmlu --no-bos', 'score without BOS, as the paper\'s released code');

const mmluCommand: CommandModule<GlobalArgs, ArgsOf<typeof mmluOptions>> = {
  command: 'mmlu',
  describe: 'MMLU accuracy (5-shot by default) per subject, subcategory, category and overall; resumable',
  builder: mmluOptions,
  handler: async (a) => {
    // --protocol released: as the released code's add_bos_token=False gives this tokenizer (Llama 3 keeps BOS)
    const bos = a.bos ?? (protocolSettings(a.protocol).scoringBos || bosUnderAddBosTokenFalse(await loadTokenizer(a.model)));
    const out = a['dry-run'] ? null : a.out ?? defaultMmluOut(a.model, a.quantize, bos);
    claimFile(a['dump-prompts'], OUTPUT_FILES.prompts, a, '--dump-prompts');
    const release = out ? claimOutput(out, 'eval mmlu', 'mmlu-results', a) : () => {};
    await setup(a);
    const log = logger(a);
    const stop = interruptOnSignals(log, 'batch');
    let bar: Progress | null = null;
    try {
      const r = await runMmluEval({
        model: a.model, data: a.data, ntrain: a.ntrain, limit: a.limit, out: out ?? undefined,
        subjects: a.subjects?.split(',').map((s) => s.trim()).filter(Boolean),
        batchSize: a['batch-size'], naive: a.naive, referenceModel: a['reference-model'], answerTokens: a['answer-tokens'], bos,
        quantize: a.quantize, dumpPrompts: a['dump-prompts'], dryRun: a['dry-run'], fresh: a.fresh, streaming: a.streaming, signal: stop.signal,
        onProgress: (p) => {
          bar ??= progress('mmlu', p.questionsToRun, { unit: 'questions', quiet: a.quiet });
          bar.tick(p.questions, `| subjects ${p.subjectsDone}/${p.subjectsTotal} (${p.subject})`);
        },
      });
      (bar as Progress | null)?.done();
      if (a['dump-prompts']) log(`prompts: ${a['dump-prompts']}`);
      if (a['dry-run']) {
        const s = r.stats, e = r.estimate!;
        if (a.json) {
          process.stdout.write(JSON.stringify({ stats: s, estimate: e }) + '\n');
          return;
        }
        process.stdout.write([
          `prompts: ${s.questions} in ${s.subjects} subjects`,
          `fitting: ${s.promptsWithDroppedExamples} prompts lost dev examples (${s.droppedExamples} examples), ${s.truncatedQuestions} questions cut to their last tokens`,
          `tokens: ${s.naiveTokens} without prefix caching (mean prompt ${s.meanPromptTokens.toFixed(0)}), ${s.cachedTokens} with it `
            + `(${s.prefixes} prefixes of mean ${s.meanPrefixTokens.toFixed(0)}, mean question part ${s.meanSuffixTokens.toFixed(0)}, ${s.uncachedQuestions} questions run alone)`,
          `estimate: ${fmtSeconds(e.cachedSeconds)} with prefix caching and batching (${s.prefixes} prefix passes, ${s.batches} question batches, `
            + `${s.uncachedQuestions} questions on their whole prompt), ${fmtSeconds(e.naiveSeconds)} naive (rough: from timing one pass of each mean shape`
            + (e.streamedPasses.cached ? `, on one layer, plus ${e.streamedPasses.cached} streamed pass${e.streamedPasses.cached > 1 ? 'es' : ''} reading each layer in ${e.layerReadSeconds.toFixed(1)} s)` : ')'),
        ].join('\n') + '\n');
        return;
      }
      const resumed = r.resumedSubjects.length ? `, ${r.resumedSubjects.length} subjects loaded from an earlier run` : '';
      log(`${r.computedQuestions} questions in ${fmtSeconds(r.seconds)}${r.seconds > 0 ? ` (${(r.computedQuestions / r.seconds).toFixed(2)} questions/s)` : ''}${resumed}; results in ${r.out}`);
      if (a.json) process.stdout.write(JSON.stringify(r.summary) + '\n');
      else process.stdout.write(formatSummaryTable(r.summary!));
    } catch (e) {
      if (!(e instanceof EvaluationInterrupted)) throw e;
      (bar as Progress | null)?.done();
      process.stderr.write(`mka: interrupted; ${e.subjectsDone} of ${e.subjectsTotal} subjects are saved in ${out}: run the same command again to resume\n`);
      process.exit(130);
    } finally {
      release();
      stop.dispose();
    }
  },
};

export const evalCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'eval',
  describe: 'Evaluate a model on a benchmark (mmlu) or a text corpus (ppl)',
  builder: (y: Argv<GlobalArgs>) => y.command(mmluCommand).command(pplCommand).demandCommand(1, 'name a benchmark: mmlu or ppl') as Argv<GlobalArgs>,
  handler: () => {},
};
