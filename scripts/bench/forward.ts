/**
 * Prefill throughput of the decoder on random weights:
 *   npm run bench -- forward --hidden 768 --layers 12 --seq 512 [--heads 12 --kv-heads 12 --ffn 2048 --vocab 32000 --batch 1]
 *     [--dtype float32|bfloat16] [--compute auto|float32|bfloat16] [--decode N]
 * Prints tokens/s and achieved GFLOP/s (matrix-product FLOPs of the pass, attention included), the
 * backend, kernels and compute dtype used. --dtype bfloat16 makes the random weights a BF16 model (so
 * --compute auto runs bf16 products where the CPU has them); the pass is then compared with the
 * machine's bf16 ceiling, measured by a register-only vdpbf16ps loop. --decode N also times N greedy
 * decoding steps after the prompt (tokens/s, as `mka generate` runs them). With float32 products in
 * mka's native kernels, the same run also prints their GFLOP/s on this pass's largest product shape,
 * the machine's theoretical sgemm ceiling, the pass on plain WebAssembly (--wasm-reps timed passes, no
 * warm-up; it is slow) and the ratios; --no-compare skips that. --pytorch PYTHON times transformers'
 * LlamaForCausalLM on the same shape, in the dtype mka's products ran in, after each of --rounds mka
 * timings (scripts/bench/pytorch-forward.py with that Python, which needs torch and transformers; set
 * PYTHONPATH as that Python needs it), and prints mka's ratio to it per round, wall and per CPU-second.
 */
import yargs from 'yargs';
import { availableParallelism, loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend, BACKENDS, COMPUTE_CHOICES, type BackendChoice, type ComputeChoice } from '../../src/runtime/backend.ts';
import { disposeCache, type KVCache } from '../../src/model/forward.ts';
import { argmax } from '../../src/model/generate.ts';
import { measuredCeilings } from './sgemm.ts';
import { loadNativeAddon, F32 } from '../../src/runtime/native-addon.ts';
import { sgemmCeiling, timeNative } from './sgemm.ts';
import { parseConfig, type LlamaConfig } from '../../src/model/config.ts';
import { disposeModel } from '../../src/model/model.ts';
import { randomModel } from '../../test/random-model.ts';
import { forward } from '../../src/model/forward.ts';
import { hasKernel } from '../../src/model/ops.ts';
import { KERNELS } from '../../src/runtime/kernel-names.ts';

/** Matrix-product FLOPs of one prefill of T tokens (2 per multiply-add), logits for every position. */
export function forwardFlops(c: LlamaConfig, T: number, B = 1): number {
  const H = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const perToken = 2 * (H * q + 2 * H * kv + q * H + 3 * H * c.intermediate_size);
  const attention = 2 * 2 * c.num_attention_heads * c.head_dim * T * T; // QK^T and PV, full square as computed
  return B * (c.num_hidden_layers * (perToken * T + attention) + 2 * T * H * c.vocab_size);
}

/**
 * Times `reps` prefills (after `warmup` untimed ones, default 1): wall seconds per pass, and CPU
 * seconds of this process per pass (the steadier figure on a shared machine).
 */
export function timeForward(c: LlamaConfig, T: number, B: number, reps: number, warmup = 1, decode = 0):
  { secs: number; cpuSecs: number; compute: string; decode?: { secs: number; cpuSecs: number } } {
  const model = randomModel(c);
  const ids = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => (7 * t + 13 * b + 1) % c.vocab_size));
  const run = () => {
    const r = forward(model, ids, { logits: 'all' });
    r.logits!.dataSync();
    r.logits!.dispose();
  };
  for (let i = 0; i < warmup; i++) run();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) run();
  const secs = (performance.now() - t0) / 1000 / reps;
  const used = process.cpuUsage(cpu0);
  let steps: { secs: number; cpuSecs: number } | undefined;
  if (decode > 0) {
    // greedy steps after the prompt of row 0, as generate() runs them: one token, the cache, the last logits
    const pre = forward(model, [ids[0]], { logits: 'last', returnCache: true });
    let cache: KVCache = pre.cache!;
    let next = argmax(pre.logits!.dataSync());
    pre.logits!.dispose();
    const d0 = process.cpuUsage(), s0 = performance.now();
    for (let i = 0; i < decode; i++) {
      const r = forward(model, [[next]], { logits: 'last', cache, returnCache: true });
      disposeCache(cache);
      cache = r.cache!;
      next = argmax(r.logits!.dataSync());
      r.logits!.dispose();
    }
    const du = process.cpuUsage(d0);
    steps = { secs: (performance.now() - s0) / 1000 / decode, cpuSecs: (du.user + du.system) / 1e6 / decode };
    disposeCache(cache);
  }
  const compute = model.compute;
  disposeModel(model);
  return { secs, cpuSecs: (used.user + used.system) / 1e6 / reps, compute, decode: steps };
}

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('hidden', { type: 'number', default: 768 })
    .option('layers', { type: 'number', default: 12 })
    .option('heads', { type: 'number' })
    .option('kv-heads', { type: 'number' })
    .option('ffn', { type: 'number' })
    .option('vocab', { type: 'number', default: 32000 })
    .option('seq', { type: 'number', default: 512 })
    .option('batch', { type: 'number', default: 1 })
    .option('reps', { type: 'number', default: 2 })
    .option('backend', { choices: BACKENDS, default: 'auto' as BackendChoice })
    .option('threads', { type: 'number', default: availableParallelism(), describe: 'threads of the native kernels' })
    .option('dtype', { choices: ['float32', 'bfloat16'] as const, default: 'float32' as const, describe: 'dtype of the random weights (config.json torch_dtype)' })
    .option('compute', { choices: COMPUTE_CHOICES, default: 'auto' as ComputeChoice, describe: 'dtype of the matrix products (as every command\'s --compute)' })
    .option('decode', { type: 'number', default: 0, describe: 'also time this many greedy decoding steps after the prompt' })
    .option('compare', { type: 'boolean', default: true, describe: 'with the native path: also print the sgemm ceiling and plain WebAssembly' })
    .option('wasm-reps', { type: 'number', default: 1, describe: 'timed passes on plain WebAssembly for the comparison (0: skip it)' })
    .option('pytorch', { type: 'string', describe: 'a Python with torch and transformers: time PyTorch on the same shape and dtype in the same run' })
    .option('rounds', { type: 'number', default: 1, describe: 'with --pytorch: rounds of mka then PyTorch, interleaved' })
    .check((v) => {
      if (!Number.isInteger(v.rounds) || v.rounds < 1) throw new Error(`--rounds ${v.rounds} is not a positive integer`);
      if (v.pytorch !== undefined && v.batch !== 1) throw new Error('--pytorch: the PyTorch side runs batch 1 only (drop --batch)');
      return true;
    })
    .parseSync();
  const heads = a.heads ?? Math.max(1, Math.round(a.hidden / 64));
  const c = parseConfig({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: a.vocab, hidden_size: a.hidden,
    intermediate_size: a.ffn ?? Math.round((8 * a.hidden) / 3 / 64) * 64, num_hidden_layers: a.layers,
    num_attention_heads: heads, num_key_value_heads: a['kv-heads'] ?? heads, max_position_embeddings: Math.max(a.seq + a.decode, 2048),
    torch_dtype: a.dtype,
  }, 'bench config');
  const info = await initBackend(a.backend, { threads: a.threads, compute: a.compute, log: (m) => console.log(m) });
  const flops = forwardFlops(c, a.seq, a.batch);
  const rounds: { mka: ReturnType<typeof timeForward>; torch?: TorchFigures }[] = [];
  for (let r = 0; r < a.rounds; r++) {
    const round = a.rounds > 1 ? `round ${r + 1}/${a.rounds}: ` : '';
    console.log(`${round}machine load (1/5/15 min): ${loadavg().map((x) => x.toFixed(2)).join(' / ')} on ${availableParallelism()} cores`);
    const mka = timeForward(c, a.seq, a.batch, a.reps, 1, a.decode);
    const { secs, cpuSecs, compute, decode } = mka;
    if (r === 0) {
      console.log(`model: hidden ${c.hidden_size}, layers ${c.num_hidden_layers}, heads ${c.num_attention_heads}/${c.num_key_value_heads}, ffn ${c.intermediate_size}, vocab ${c.vocab_size}, ${a.dtype} weights, products in ${compute}`);
      console.log(`decoder layers: ${hasKernel(KERNELS.decoderLayer) ? 'one fused native call per layer (MkaDecoderLayer)' : 'tfjs ops (native kernels where registered)'}`);
    }
    console.log(`${round}prefill ${a.batch}x${a.seq} tokens on ${info.description}: ${secs.toFixed(3)} s/pass, ` +
      `${((a.batch * a.seq) / secs).toFixed(1)} tokens/s, ${(flops / secs / 1e9).toFixed(2)} GFLOP/s ` +
      `(${cpuSecs.toFixed(3)} CPU-s/pass: ${(flops / cpuSecs / 1e9).toFixed(2)} GFLOP per CPU-second)`);
    if (decode) {
      console.log(`${round}decode after a ${a.seq}-token prompt: ${(1 / decode.secs).toFixed(1)} tokens/s (${(1000 * decode.secs).toFixed(1)} ms/token, ` +
        `${(1000 * decode.cpuSecs).toFixed(1)} CPU-ms/token)`);
    }
    const torch = a.pytorch === undefined ? undefined : timePytorch(a.pytorch, c, a.seq, a.reps, a.decode, compute, a.threads, round);
    rounds.push({ mka, torch });
  }
  if (a.pytorch !== undefined) printRatios(rounds as { mka: ReturnType<typeof timeForward>; torch: TorchFigures }[], rounds[0].mka.compute);
  const compute = rounds[0].mka.compute;
  const { secs, cpuSecs } = rounds[rounds.length - 1].mka;
  if (compute === 'bfloat16' && info.nativeMatMul) {
    const addon = loadNativeAddon().addon!;
    const ceil = measuredCeilings(addon).bf16;
    const kernel = addon.info().bf16Kernel;
    if (ceil.wall > 0) {
      console.log(`bf16 ceiling (${kernel}; register-only vdpbf16ps loop on ${addon.info().threads} threads): ${ceil.wall.toFixed(1)} GFLOP/s wall, ` +
        `${ceil.perCpuSecond.toFixed(1)} per CPU-second; the pass reached ${((100 * flops) / secs / 1e9 / ceil.wall).toFixed(1)}% of it wall, ` +
        `${((100 * flops) / cpuSecs / 1e9 / ceil.perCpuSecond).toFixed(1)}% per CPU-second`);
    } else {
      console.log(`bf16 ceiling: not measured (the bf16 products run on ${kernel}, which has no register-only loop here)`);
    }
    return;
  }
  if (info.nativeMatMul && a.compare) await compareWithWasm(c, a.seq, a.batch, flops / secs / 1e9, a.threads, a['wasm-reps']);
}

/** PyTorch's figures of one run of scripts/bench/pytorch-forward.py (seconds per pass or token, wall and CPU). */
interface TorchFigures {
  torch: string;
  transformers: string;
  prefill: { secs: number; cpuSecs: number };
  decode?: { secs: number; cpuSecs: number };
}

/** Runs scripts/bench/pytorch-forward.py with `python` on config `c`, echoing its lines; its figures. */
function timePytorch(python: string, c: LlamaConfig, T: number, reps: number, decode: number, dtype: string, threads: number, prefix: string): TorchFigures {
  const script = fileURLToPath(new URL('./pytorch-forward.py', import.meta.url));
  const args = [script, '--hidden', c.hidden_size, '--layers', c.num_hidden_layers, '--heads', c.num_attention_heads, '--kv-heads', c.num_key_value_heads,
    '--ffn', c.intermediate_size, '--vocab', c.vocab_size, '--seq', T, '--reps', reps, '--decode', decode, '--dtype', dtype, '--threads', threads, '--json'].map(String);
  const r = spawnSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.error || r.status !== 0) {
    throw new Error(`--pytorch ${python}: ${r.error?.message ?? `exit ${r.status}`}\n${(r.stderr ?? '').split('\n').slice(-8).join('\n')}`);
  }
  const lines = r.stdout.trim().split('\n');
  for (const line of lines.slice(0, -1)) console.log(`${prefix}${line}`);
  return JSON.parse(lines[lines.length - 1]) as TorchFigures;
}

/** mka's ratio to PyTorch per round (tokens per wall second and per CPU-second; above 1: mka is faster). */
function printRatios(rounds: { mka: ReturnType<typeof timeForward>; torch: TorchFigures }[], dtype: string): void {
  const range = (xs: number[]) => {
    const lo = Math.min(...xs), hi = Math.max(...xs);
    return lo.toFixed(2) === hi.toFixed(2) ? `${lo.toFixed(2)}×` : `${lo.toFixed(2)} to ${hi.toFixed(2)}×`;
  };
  const t = rounds[0].torch;
  console.log(`mka / PyTorch ${t.torch} (transformers ${t.transformers}) ${dtype}, ${rounds.length} round${rounds.length === 1 ? '' : 's'}, same shape and threads:`);
  console.log(`  prefill: ${range(rounds.map((r) => r.torch.prefill.secs / r.mka.secs))} wall, ${range(rounds.map((r) => r.torch.prefill.cpuSecs / r.mka.cpuSecs))} per CPU-second`);
  const dec = rounds.filter((r) => r.mka.decode && r.torch.decode);
  if (dec.length) {
    console.log(`  decode:  ${range(dec.map((r) => r.torch.decode!.secs / r.mka.decode!.secs))} wall, ${range(dec.map((r) => r.torch.decode!.cpuSecs / r.mka.decode!.cpuSecs))} per CPU-second`);
  }
}

/** Prints the kernels' speed at the pass's MLP shape, the sgemm ceiling, the same pass on plain WebAssembly, and the ratios. */
async function compareWithWasm(c: LlamaConfig, T: number, B: number, fast: number, threads: number, wasmReps: number): Promise<void> {
  const addon = loadNativeAddon().addon!;
  const ai = addon.info();
  const shape = { name: 'mlp', m: B * T, n: c.intermediate_size, k: c.hidden_size, transB: true, type: F32 } as const;
  const kernel = timeNative(addon, shape, 3);
  const ceil = sgemmCeiling(ai.isa, ai.cpu, threads);
  console.log(`native matmul at the MLP shape ${shape.m}x${shape.n}x${shape.k} A·Bᵀ, ${ai.threads} threads: ${kernel.wall.toFixed(1)} GFLOP/s ` +
    `(${((100 * kernel.wall) / ceil.gflops).toFixed(0)}% of the ${ceil.gflops.toFixed(1)} GFLOP/s ceiling = ${ceil.how})`);
  const ceiling = ceil.gflops;
  const ofCeiling = `${((100 * fast) / ceiling).toFixed(1)}% of the sgemm ceiling`;
  if (wasmReps < 1) {
    console.log(`fast path: ${fast.toFixed(2)} GFLOP/s = ${ofCeiling} (plain WebAssembly skipped: --wasm-reps 0)`);
    return;
  }
  const info = await initBackend('wasm');
  const { secs } = timeForward(c, T, B, wasmReps, 0);
  const wasm = forwardFlops(c, T, B) / secs / 1e9;
  console.log(`prefill ${B}x${T} tokens on ${info.description}: ${secs.toFixed(3)} s/pass, ${((B * T) / secs).toFixed(1)} tokens/s, ${wasm.toFixed(2)} GFLOP/s`);
  console.log(`fast path: ${fast.toFixed(2)} GFLOP/s = ${ofCeiling}, ${(fast / wasm).toFixed(1)}× plain WebAssembly`);
}
