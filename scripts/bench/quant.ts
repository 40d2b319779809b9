/**
 * Packed weights against 16-bit ones on a paper-shape model: bytes on disk and in memory, prefill speed
 * of each (resident, each model in its own process), and the peak RSS of `mka eval mmlu` on the packed
 * model held resident (no --streaming), then results/bench-quant.json.
 *
 *   npm run bench -- quant [--model DIR] [--quantized DIR] [--quantize rtn:w4g128] [--layers N] [--tokens 512]
 *                          [--computes auto,int8] [--data MMLU_DIR] [--eval-subjects a,b] [--limit 1] [--eval-compute auto]
 *                          [--steps bytes,prefill,eval]
 *
 * --model is a BF16 checkpoint (default /work/scale-models/llama3-8b; made with make-paper-model at the
 * Llama-3-8B shape, --layers N, when missing); --quantized its packed copy (made with `mka quantize`
 * --quantize when missing: round to nearest needs no calibration). Prefill runs --tokens tokens twice
 * after a warm-up and reports the faster, the packed model once per --computes choice (auto: float32
 * rows of the dequantized weights; int8: the integer kernels); which kernels ran is printed. Heavy: run
 * under flock /work/notes/heavy.lock.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { makePaperModel } from '../make-paper-model.ts';
import { measure } from './scale.ts';
import { atomicWriteText } from '../../src/io/atomic.ts';
import type { ComputeChoice } from '../../src/runtime/backend-choice.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'bin', 'mka.mjs');
const SELF = fileURLToPath(import.meta.url);

/** In a child process: load `model` resident, prefill `tokens` tokens (a warm-up, then twice), print JSON. */
async function prefillChild(model: string, tokens: number, compute: ComputeChoice): Promise<void> {
  const { initBackend } = await import('../../src/runtime/backend.ts');
  const { loadModel, disposeModel } = await import('../../src/model/model.ts');
  const { forward } = await import('../../src/model/forward.ts');
  const { packedPath, weightBytes } = await import('../../src/model/ops.ts');
  const { tf } = await import('../../src/runtime/tf.ts');
  const backend = await initBackend('auto', { compute });
  const t0 = performance.now();
  const m = loadModel(model);
  const loadSeconds = (performance.now() - t0) / 1000;
  const held = [...m.tensors.values()].reduce((a, t) => a + t.size * 4, 0) + [...(m.packed?.values() ?? [])].reduce((a, w) => a + weightBytes(w), 0);
  const ids = [Array.from({ length: tokens }, (_, i) => 1000 + ((i * 7919) % 20000))];
  const run = () => {
    const s = performance.now();
    const r = forward(m, ids, { logits: 'last' });
    r.logits!.dataSync();
    r.logits!.dispose();
    return (performance.now() - s) / 1000;
  };
  run(); // warm-up
  const seconds = Math.min(run(), run());
  const packed = [...(m.packed?.values() ?? [])].some((w) => w.quant);
  process.stdout.write(JSON.stringify({
    model, backend: backend.description, kernels: packed ? packedPath() : `${m.compute} products`, tokens, seconds, tokensPerSecond: tokens / seconds,
    loadSeconds, heldBytes: held, tfBytes: tf.memory().numBytes,
  }) + '\n');
  disposeModel(m);
}

/** Runs this file as a child (`--child prefill`) and returns its JSON line and peak RSS. */
async function childPrefill(model: string, tokens: number, compute: string, log: (s: string) => void): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--child', 'prefill', '--model', model, '--tokens', String(tokens), '--compute', compute], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    process.stderr.write(d);
  });
  let peak = 0;
  const poll = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    } catch {
      // gone
    }
  }, 200);
  const code: number | null = await new Promise((res) => child.on('close', (c) => res(c)));
  clearInterval(poll);
  if (code !== 0) throw new Error(`prefill of ${model} failed (exit ${code}): ${err.split('\n').slice(-5).join(' ')}`);
  const r = JSON.parse(out.trim().split('\n').pop()!) as Record<string, unknown>;
  log(`prefill ${model} (--compute ${compute}): ${(r.tokensPerSecond as number).toFixed(1)} tokens/s (${tokens} tokens in ${(r.seconds as number).toFixed(2)} s), ${r.kernels}, weights held ${(Number(r.heldBytes) / 1e9).toFixed(2)} GB`);
  return { ...r, peakRss: peak };
}

const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;

export async function main(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .option('child', { type: 'string' })
    .option('model', { type: 'string', default: '/work/scale-models/llama3-8b' })
    .option('quantized', { type: 'string' })
    .option('quantize', { type: 'string', default: 'rtn:w4g128' })
    .option('layers', { type: 'number', default: 32 })
    .option('tokens', { type: 'number', default: 512 })
    .option('compute', { type: 'string', default: 'auto' })
    .option('computes', { type: 'string', default: 'auto,int8' })
    .option('eval-compute', { type: 'string', default: 'auto' })
    .option('data', { type: 'string', default: join(process.env.MKA_SHARED ?? join(ROOT, '..', 'shared'), 'data', 'mmlu') })
    .option('eval-subjects', { type: 'string', default: 'abstract_algebra,anatomy' })
    .option('limit', { type: 'number', default: 2 })
    .option('steps', { type: 'string', default: 'bytes,prefill,eval' })
    .strict().parse();
  if (a.child === 'prefill') return prefillChild(a.model, a.tokens, a.compute as ComputeChoice);
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const steps = new Set(a.steps.split(','));
  const model = resolve(a.model);
  if (!existsSync(model)) {
    log(`making the Llama-3-8B shape with ${a.layers} layers at ${model}`);
    await makePaperModel({ shape: 'llama3-8b', layers: a.layers, out: model });
  }
  const quantized = resolve(a.quantized ?? `${model}-${a.quantize.replace(/[^a-z0-9]+/gi, '-')}`);
  const results: Record<string, unknown> = { model, quantized, quantize: a.quantize };
  if (!existsSync(quantized)) {
    const [method, grid] = a.quantize.split(':');
    const m = /^w(4|8)(?:g(\d+))?(-asym)?$/.exec(grid ?? '');
    if (!m || method !== 'rtn') throw new Error(`--quantize ${a.quantize}: the bench makes rtn models only (pass --quantized DIR for others)`);
    results.quantizeStep = await measure('compress', ['quantize', '--model', model, '--method', 'rtn', '--bits', m[1], '--group-size', m[2] ?? '0', ...(m[3] ? ['--asym'] : []), '--out', quantized], log);
  }
  const { modelInfo } = await import('../../src/model/info.ts');
  const bf = modelInfo(model), q = modelInfo(quantized);
  results.bytes = { model: bf.bytes_on_disk, quantized: q.bytes_on_disk, ratio: q.bytes_on_disk / bf.bytes_on_disk, parameters: bf.parameters };
  log(`bytes on disk: ${gb(bf.bytes_on_disk)} (${bf.dtypes.join(', ')}) -> ${gb(q.bytes_on_disk)} (${q.quantization}): ${(100 * q.bytes_on_disk / bf.bytes_on_disk).toFixed(1)}%, ${(8 * q.bytes_on_disk / bf.parameters).toFixed(2)} bits per parameter`);
  if (steps.has('prefill')) {
    const quantizedRuns: Record<string, unknown> = {};
    for (const c of a.computes.split(',')) quantizedRuns[c] = await childPrefill(quantized, a.tokens, c, log);
    results.prefill = { model: await childPrefill(model, a.tokens, 'auto', log), quantized: quantizedRuns };
  }
  if (steps.has('eval')) {
    if (!existsSync(a.data)) throw new Error(`--data ${a.data}: no MMLU directory there (set MKA_SHARED or pass --data)`);
    const e = await measure('eval', ['eval', 'mmlu', '--model', quantized, '--data', a.data, '--subjects', a['eval-subjects'], '--limit', String(a.limit), '--compute', a['eval-compute'], '--out', join(ROOT, 'results', 'bench-quant-eval'), '--fresh'], log);
    results.eval = { ...e, compute: a['eval-compute'] };
    log(`eval mmlu resident on the packed model (${a['eval-subjects']}, --limit ${a.limit}, --compute ${a['eval-compute']}): peak RSS ${gb(e.peakRss)}, ${e.seconds.toFixed(0)} s, exit ${e.exitCode}`);
  }
  atomicWriteText(join(ROOT, 'results', 'bench-quant.json'), JSON.stringify(results, null, 2) + '\n');
  process.stdout.write(JSON.stringify(results) + '\n');
}

if (process.argv[1] === SELF) await main(process.argv.slice(2));
