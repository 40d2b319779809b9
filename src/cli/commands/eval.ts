import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, FORCE_DIR, claimFile, claimOutput, runResumable, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { defineCommand } from '../options.ts';
import { flag, option } from '../../runtime/options.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { progress, type Progress } from '../../runtime/progress.ts';
import { MODEL, REVISION, STREAMING } from '../../model/options.ts';
import { PROTOCOL } from '../../compress/options.ts';
import {
  ANSWER_TOKENS, BATCH_SIZE, BOS, DRY_RUN, DUMP_PROMPTS, EVAL_QUANTIZE, EVAL_SUBJECTS, FRESH, LIMIT, MMLU_DATA, NAIVE, NTRAIN, REFERENCE_MODEL,
} from '../../eval/mmlu/options.ts';
import { pplCommand } from './eval-ppl.ts';
import { taskCommands, tasksCommand } from './eval-tasks.ts';
import { LOG_SAMPLES } from '../../eval/tasks/options.ts';

const fmtSeconds = (s: number) => (s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

const OUT = option({ ...OUT_SPEC, help: 'results directory (default results/mmlu/<model name>); rerun to resume' });

const mmluCommand = defineCommand({
  command: 'mmlu',
  describe: 'MMLU accuracy (5-shot by default) per subject, subcategory, category and overall; resumable',
  options: [
    ...COMPUTE_OPTIONS, MODEL, REVISION, MMLU_DATA, NTRAIN, EVAL_SUBJECTS, LIMIT, OUT, BATCH_SIZE, NAIVE, REFERENCE_MODEL, ANSWER_TOKENS, BOS,
    {
      ...PROTOCOL, group: undefined,
      help: 'released: score as the paper\'s released code (add_bos_token=False: no BOS for Llama 2/Mistral tokenizers, BOS kept for Llama 3\'s, which ignores the flag; --bos/--no-bos override)',
    },
    EVAL_QUANTIZE, DUMP_PROMPTS, { ...LOG_SAMPLES, help: 'also write samples_mmlu_<subject>.jsonl into the results directory, in lm-eval\'s --log_samples layout' },
    DRY_RUN, FRESH, STREAMING, FORCE_DIR,
  ],
  examples: [
    ['$0 eval mmlu --model models/demo --data data/demo-mmlu', ''],
    ['$0 eval mmlu --model out/merged --data ../shared/data/mmlu --reference-model models/base --limit 20', ''],
    ['$0 eval mmlu --model out/merged --data ../shared/data/mmlu --no-bos', 'score without BOS, as the paper\'s released code'],
  ],
  run: async (v, ctx) => {
    const { protocolSettings } = await import('../../compress/protocol.ts');
    const { defaultMmluOut, runMmluEval } = await import('../../eval/mmlu/run.ts');
    const { EvaluationInterrupted } = await import('../../eval/mmlu/evaluate.ts');
    const { formatSummaryTable } = await import('../../eval/mmlu/results.ts');
    const { OUTPUT_FILES } = await import('../../io/output-dir.ts');
    const { bosUnderAddBosTokenFalse, loadTokenizer } = await import('../../tokenizer/tokenizer.ts');
    // --protocol released: as the released code's add_bos_token=False gives this tokenizer (Llama 3 keeps BOS)
    const bos = v.bos ?? (protocolSettings(v.protocol).scoringBos || bosUnderAddBosTokenFalse(await loadTokenizer(v.model)));
    const out = v.dryRun ? null : v.out ?? defaultMmluOut(v.model, v.quantize, bos);
    claimFile(v.dumpPrompts, OUTPUT_FILES.prompts, v.force, ctx.inputs, DUMP_PROMPTS);
    const release = out ? claimOutput(out, 'eval mmlu', 'mmlu-results', v.force, ctx.inputs) : () => {};
    await setup({ ...v, quiet: ctx.quiet });
    let bar: Progress | null = null;
    const saved = (e: unknown) => {
      if (!(e instanceof EvaluationInterrupted)) return null;
      (bar as Progress | null)?.done();
      return `${e.subjectsDone} of ${e.subjectsTotal} subjects are saved in ${out}`;
    };
    await runResumable(ctx, 'batch', release, saved, async (signal) => {
      const r = await runMmluEval({
        model: v.model, data: v.data, ntrain: v.ntrain, limit: v.limit, out: out ?? undefined,
        subjects: v.subjects,
        batchSize: v.batchSize, naive: v.naive, referenceModel: v.referenceModel, answerTokens: v.answerTokens, bos,
        quantize: v.quantize, dumpPrompts: v.dumpPrompts, logSamples: v.logSamples, dryRun: v.dryRun, fresh: v.fresh, streaming: v.streaming, signal,
        onProgress: (p) => {
          bar ??= progress('mmlu', p.questionsToRun, { unit: 'questions', quiet: ctx.quiet });
          bar.tick(p.questions, `| subjects ${p.subjectsDone}/${p.subjectsTotal} (${p.subject})`);
        },
      });
      (bar as Progress | null)?.done();
      if (v.dumpPrompts) ctx.log(`prompts: ${v.dumpPrompts}`);
      if (v.dryRun) {
        const s = r.stats, e = r.estimate!;
        if (ctx.json) {
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
      const fit = r.summary!.fitting;
      if (fit.promptsWithDroppedExamples || fit.truncatedQuestions) {
        ctx.log(`mmlu: ${fit.promptsWithDroppedExamples} of ${r.summary!.overall.questions} prompts were longer than the model's context and lost dev examples (${fit.droppedExamples} in all)`
          + `${fit.truncatedQuestions ? `; ${fit.truncatedQuestions} questions were still too long and cut to their last tokens` : ''} (recorded in summary.json and lm_eval_results.json)`);
      }
      const resumed = r.resumedSubjects.length ? `, ${r.resumedSubjects.length} subjects loaded from an earlier run` : '';
      ctx.log(`${r.computedQuestions} questions in ${fmtSeconds(r.seconds)}${r.seconds > 0 ? ` (${(r.computedQuestions / r.seconds).toFixed(2)} questions/s)` : ''}${resumed}; results in ${r.out}`);
      if (ctx.json) process.stdout.write(JSON.stringify(r.summary) + '\n');
      else process.stdout.write(formatSummaryTable(r.summary!));
    });
  },
});

export const evalCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'eval',
  describe: 'Evaluate a model on benchmarks (mmlu, hellaswag, arc_easy, ..., several at once: tasks) or a text corpus (ppl)',
  builder: (y: Argv<GlobalArgs>) => {
    let yy = y.command(mmluCommand);
    for (const c of taskCommands) yy = yy.command(c);
    return yy.command(tasksCommand).command(pplCommand)
      .demandCommand(1, `name a benchmark: mmlu, ${taskCommands.map((c) => c.command).join(', ')}, tasks or ppl`) as Argv<GlobalArgs>;
  },
  handler: () => {},
};
