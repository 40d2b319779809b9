/**
 * MMLU evaluation throughput, prefix-cached and batched versus naive (each full prompt alone), on the
 * same model and questions:
 *   npm run bench -- mmlu [--model DIR] [--data DIR] [--subjects a,b] [--limit N] [--batch-size 16] [--ntrain 5]
 * Defaults: models/demo with data/demo-mmlu (generated if missing), else stories260K from $MKA_SHARED
 * (converted into a temporary directory) with $MKA_SHARED/data/mmlu. Prints questions per second of the model
 * work (prompt tokenization, identical for both, is reported apart) and the ratio, and checks that both
 * paths gave the same predictions. Also prints questions per CPU-second of this process (the steadier
 * figure on a shared machine) and the ratio to the reference: PyTorch 2 float32 on 2 threads,
 * one full 5-shot prompt per question (the paper's loop), 80 questions/s on the demo model (measured
 * elsewhere: PyTorch is not a dependency of mka).
 */
import yargs from 'yargs';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { initBackend, BACKENDS, type BackendChoice } from '../../src/runtime/backend.ts';
import { removeOnExit } from '../../src/io/cleanup.ts';
import { convertLlama2c } from '../../src/convert/llama2c.ts';
import { disposeModel, loadModel } from '../../src/model/model.ts';
import { loadTokenizer } from '../../src/tokenizer/tokenizer.ts';
import { loadMmlu } from '../../src/eval/mmlu/data.ts';
import { createMmluCache, evaluateMmlu, type EvaluateMmluResult } from '../../src/eval/mmlu/evaluate.ts';
import { ensureBenchmark } from '../../src/eval/mmlu/demo-benchmark.ts';
import { hasKernel } from '../../src/model/ops.ts';
import { KERNELS } from '../../src/runtime/kernel-names.ts';

/** PyTorch 2 float32, 2 threads, one full 5-shot prompt per question on the demo model (issue #13). */
const PYTORCH_DEMO_QPS = 80;

/** The evaluation's result with the CPU seconds of this process it took. */
async function timed(run: () => Promise<EvaluateMmluResult>): Promise<EvaluateMmluResult & { cpuSeconds: number }> {
  const c0 = process.cpuUsage();
  const r = await run();
  const used = process.cpuUsage(c0);
  return { ...r, cpuSeconds: (used.user + used.system) / 1e6 };
}

const DEFAULT_SHARED_SUBJECTS = 'abstract_algebra,anatomy,marketing,world_religions';

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('model', { type: 'string', describe: 'model directory (default models/demo, else stories260K from $MKA_SHARED)' })
    .option('data', { type: 'string', describe: 'MMLU directory (default data/demo-mmlu, else $MKA_SHARED/data/mmlu)' })
    .option('subjects', { type: 'string', describe: `comma-separated subjects (default: all of the demo data, or ${DEFAULT_SHARED_SUBJECTS})` })
    .option('limit', { type: 'number', default: 32, describe: 'questions per subject' })
    .option('ntrain', { type: 'number', default: 5 })
    .option('batch-size', { type: 'number', default: 16 })
    .option('backend', { choices: BACKENDS, default: 'auto' as BackendChoice })
    .option('compare', { type: 'boolean', default: true, describe: 'with the native matmul, also time plain WebAssembly' })
    .parseSync();
  const shared = resolve(process.env.MKA_SHARED ?? '../shared');
  let modelDir = a.model, dataDir = a.data, subjects = a.subjects, tmp: string | null = null;
  if (!modelDir && existsSync('models/demo/config.json')) {
    modelDir = 'models/demo';
    if (!dataDir) await ensureBenchmark(dataDir = 'data/demo-mmlu');
  }
  if (!modelDir) {
    const stories = join(shared, 'models/stories260K');
    if (!existsSync(stories)) throw new Error(`no --model given, models/demo missing, and ${stories} not found (set MKA_SHARED)`);
    tmp = mkdtempSync(join(tmpdir(), 'mka-bench-mmlu-'));
    removeOnExit(tmp); // also when the bench is stopped with Ctrl-C
    modelDir = join(tmp, 'stories260K');
    await convertLlama2c({ checkpoint: join(stories, 'stories260K.bin'), tokenizer: join(stories, 'tok512.bin'), out: modelDir });
    dataDir ??= join(shared, 'data/mmlu');
    subjects ??= DEFAULT_SHARED_SUBJECTS;
  }
  dataDir ??= join(shared, 'data/mmlu');
  try {
    const info = await initBackend(a.backend);
    const model = loadModel(modelDir);
    const tokenizer = await loadTokenizer(modelDir);
    const data = loadMmlu(dataDir, { subjects: subjects?.split(',').map((s) => s.trim()) });
    // Prompts are planned (tokenized) once, untimed, so the CPU seconds below are the model's.
    const cache = createMmluCache(tokenizer, data);
    const tPlan = performance.now();
    await evaluateMmlu({ model, tokenizer, data, ntrain: a.ntrain, limit: a.limit, cache, dryRun: true });
    const planRate = data.subjects.reduce((n, s) => n + Math.min(a.limit, data.test.get(s)!.length), 0) / ((performance.now() - tPlan) / 1000);
    const common = { model, tokenizer, data, ntrain: a.ntrain, limit: a.limit, batchSize: a['batch-size'], cache };
    // Warm-up (kernels, JIT) on one subject, untimed.
    await evaluateMmlu({ ...common, subjects: data.subjects.slice(0, 1), limit: Math.min(a.limit, 2) });
    // Subject by subject, each path in turn, so that load from other processes affects both alike.
    const fast: (EvaluateMmluResult & { cpuSeconds: number })[] = [], naive: EvaluateMmluResult[] = [];
    for (const subject of data.subjects) {
      fast.push(await timed(() => evaluateMmlu({ ...common, subjects: [subject], cached: true })));
      naive.push(await evaluateMmlu({ ...common, subjects: [subject], cached: false }));
    }
    const sum = (rs: EvaluateMmluResult[], f: (r: EvaluateMmluResult) => number) => rs.reduce((t, r) => t + f(r), 0);
    const n = sum(fast, (r) => r.computedQuestions);
    const modelSeconds = (rs: EvaluateMmluResult[]) => sum(rs, (r) => r.seconds - r.planSeconds);
    const rate = (rs: EvaluateMmluResult[]) => n / modelSeconds(rs);
    const records = (rs: EvaluateMmluResult[]) => rs.flatMap((r) => r.records);
    const same = records(fast).every((r, i) => r.prediction === records(naive)[i].prediction);
    const prefixes = sum(fast, (r) => r.stats.prefixes), alone = sum(fast, (r) => r.stats.uncachedQuestions);
    const c = model.config;
    console.log(`backend: ${info.description}; decoder layers: ${hasKernel(KERNELS.decoderLayer) ? 'one fused native call per layer (MkaDecoderLayer)' : 'tfjs ops'}`);
    console.log(`model: ${modelDir} (hidden ${c.hidden_size}, layers ${c.num_hidden_layers}, vocab ${c.vocab_size}, context ${c.max_position_embeddings})`);
    console.log(`questions: ${n} (${data.subjects.length} subjects × ≤${a.limit}, ${a.ntrain}-shot; `
      + `${prefixes} cached prefixes, ${alone} questions without a shared prefix)`);
    console.log(`prompt planning (tokenize + fit, same for both, done once before the timed runs): ${planRate.toFixed(2)} questions/s`);
    console.log(`cached + batched (batch ${a['batch-size']}): ${rate(fast).toFixed(2)} questions/s`);
    console.log(`  per CPU-second of this process: ${(n / fast.reduce((t, r) => t + r.cpuSeconds, 0)).toFixed(2)} questions (steadier on a busy machine)`);
    console.log(`  vs the issue's PyTorch figure (2 threads, one full prompt per question, ${PYTORCH_DEMO_QPS} questions/s on models/demo, measured elsewhere): ${(rate(fast) / PYTORCH_DEMO_QPS).toFixed(2)}×${modelDir === 'models/demo' ? '' : ' (another model: not comparable)'}`);
    console.log(`naive (each full prompt alone):  ${rate(naive).toFixed(2)} questions/s`);
    console.log(`ratio: ${(rate(fast) / rate(naive)).toFixed(2)}×; same predictions: ${same ? 'yes' : 'NO'}`);
    disposeModel(model);
    if (info.nativeMatMul && a.compare) {
      // the cached path again on plain WebAssembly: the native matrix products' speed-up
      await initBackend('wasm');
      const wasmModel = loadModel(modelDir);
      const wasmRuns: EvaluateMmluResult[] = [];
      for (const subject of data.subjects) wasmRuns.push(await evaluateMmlu({ ...common, model: wasmModel, subjects: [subject], cached: true }));
      disposeModel(wasmModel);
      const wasmSame = records(wasmRuns).every((r, i) => r.prediction === records(fast)[i].prediction);
      console.log(`cached + batched on plain WebAssembly: ${rate(wasmRuns).toFixed(2)} questions/s; native matmul speed-up ${(rate(fast) / rate(wasmRuns)).toFixed(2)}×; same predictions: ${wasmSame ? 'yes' : 'NO'}`);
    }
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}
