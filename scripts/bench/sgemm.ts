/**
 * Matrix-product speed on this machine:
 *   npm run bench -- sgemm [--threads N] [--reps 3] [--quick]
 * Prints the native kernels' path and thread count; GFLOP/s of mka's own matmul on every
 * instruction-set path this CPU has (each in a child process with MKA_ISA, which is read at load),
 * at square 2048, 512x2048x2048 (A·Bᵀ, the HF [out, in] layout), 512x8192x2048 and a 1-row GEMV,
 * float32 and bf16 weights widened per tile; the bf16 products (linear on weights packed into bf16
 * panels: vdpbf16ps or AMX where the CPU has them) at the same shapes, with their error; the machine's
 * sgemm ceiling (cores × clock × FLOPs/cycle of the path) and the float32, bf16 and int8 ceilings
 * measured by a register-only loop; OpenBLAS's figure when a libopenblas happens to be installed
 * (dlopen; mka never computes with it); and tfjs's plain WebAssembly matMul for A·B and A·Bᵀ.
 * Timings are wall clock; on a shared machine the "cpu" figure (FLOPs per CPU-second of this
 * process) is the steadier one.
 */
import { tf } from '../../src/runtime/tf.ts';
import yargs from 'yargs';
import { availableParallelism, cpus } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../../src/runtime/backend.ts';
import { BF16, BF16P, F32, bf16PackedWords, loadNativeAddon, type ElementType, type NativeAddon } from '../../src/runtime/native-addon.ts';

/** A product shape: C[m][n] = A[m][k] · op(B); `products: 'bf16'` multiplies by B packed into bf16 panels (linear, transB). */
export interface Shape { name: string; m: number; n: number; k: number; transB: boolean; type: ElementType; products?: 'bf16'; compare?: string }

export const SHAPES: Shape[] = [
  { name: '2048³ A·B', m: 2048, n: 2048, k: 2048, transB: false, type: F32 },
  { name: '2048³ A·Bᵀ', m: 2048, n: 2048, k: 2048, transB: true, type: F32 },
  { name: '512x2048x2048 A·Bᵀ', m: 512, n: 2048, k: 2048, transB: true, type: F32 },
  { name: '512x8192x2048 A·Bᵀ', m: 512, n: 8192, k: 2048, transB: true, type: F32 },
  { name: '512x2048x2048 A·Bᵀ bf16 B', m: 512, n: 2048, k: 2048, transB: true, type: BF16 },
  { name: 'GEMV 1x8192x2048 A·Bᵀ', m: 1, n: 8192, k: 2048, transB: true, type: F32 },
  { name: 'GEMV 1x8192x2048 A·Bᵀ bf16 B', m: 1, n: 8192, k: 2048, transB: true, type: BF16 },
  { name: '512x2048x2048 bf16 products', m: 512, n: 2048, k: 2048, transB: true, type: BF16, products: 'bf16', compare: '512x2048x2048 A·Bᵀ bf16 B' },
  { name: '512x8192x2048 bf16 products', m: 512, n: 8192, k: 2048, transB: true, type: BF16, products: 'bf16', compare: '512x8192x2048 A·Bᵀ' },
  { name: 'GEMV 1x8192x2048 bf16 products', m: 1, n: 8192, k: 2048, transB: true, type: BF16, products: 'bf16', compare: 'GEMV 1x8192x2048 A·Bᵀ bf16 B' },
];

function random(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0, x = seed; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    out[i] = (x >>> 8) / 2 ** 24 - 0.5;
  }
  return out;
}

/** Best wall-clock GFLOP/s over `reps` calls (after one warm-up), and FLOPs per CPU-second over all of them. */
export function timeNative(addon: NativeAddon, s: Shape, reps: number): { wall: number; cpu: number } {
  const a = random(s.m * s.k, 1), b32 = random(s.k * s.n, 2);
  const b = s.type === F32 ? b32 : Uint16Array.from(new Uint32Array(b32.buffer), (w) => w >>> 16);
  const c = new Float32Array(s.m * s.n);
  const flops = 2 * s.m * s.n * s.k;
  let run = () => addon.matmul({ a, b, bType: s.type, c, m: s.m, n: s.n, k: s.k, transB: s.transB });
  if (s.products === 'bf16') {
    const data = new Int32Array(bf16PackedWords(s.n, s.k));
    addon.packBf16({ src: b, type: s.type, rows: s.n, cols: s.k, out: data });
    run = () => addon.linear({ x: a, m: s.m, weight: { format: BF16P, rows: s.n, cols: s.k, data }, y: c });
  }
  run();
  // small products: repeat inside one timing so each sample lasts a few milliseconds
  const inner = Math.max(1, Math.ceil(2e8 / flops));
  let best = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    for (let i = 0; i < inner; i++) run();
    best = Math.max(best, (inner * flops) / ((performance.now() - t) / 1000) / 1e9);
  }
  const used = process.cpuUsage(cpu0);
  const cpuSecs = (used.user + used.system) / 1e6;
  void t0;
  return { wall: best, cpu: (reps * inner * flops) / cpuSecs / 1e9 };
}

/** The addon's bench-only hook that runs an installed OpenBLAS (never used for mka's own work). */
type BlasProbe = NativeAddon & {
  _openblasSgemm(d: { path: string; threads: number; a: Float32Array; b: Float32Array; c: Float32Array; m: number; n: number; k: number; transB: boolean }): boolean;
};

/** OpenBLAS's cblas_sgemm on a shape, timed like timeNative; null when the library does not load. */
export function timeOpenBlas(addon: BlasProbe, path: string, s: Shape, threads: number, reps: number): { wall: number; cpu: number } | null {
  const a = random(s.m * s.k, 1), b = random(s.k * s.n, 2), c = new Float32Array(s.m * s.n);
  const flops = 2 * s.m * s.n * s.k;
  const d = { path, threads, a, b, c, m: s.m, n: s.n, k: s.k, transB: s.transB };
  if (!addon._openblasSgemm(d)) return null;
  let best = 0;
  const cpu0 = process.cpuUsage();
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    addon._openblasSgemm(d);
    best = Math.max(best, flops / ((performance.now() - t) / 1000) / 1e9);
  }
  const used = process.cpuUsage(cpu0);
  return { wall: best, cpu: (reps * flops) / ((used.user + used.system) / 1e6) / 1e9 };
}

/** Best GFLOP/s of `reps` tf.matMul calls of [m, k] by [k, n] (or [n, k] transposed), after one warm-up. */
export function timeMatMul(m: number, k: number, n: number, transposeB: boolean, reps: number): number {
  const a = tf.randomNormal([m, k], 0, 1, 'float32', 1);
  const b = tf.randomNormal(transposeB ? [n, k] : [k, n], 0, 1, 'float32', 2);
  let best = 0;
  for (let r = 0; r <= reps; r++) {
    const t0 = performance.now();
    const y = tf.matMul(a, b, false, transposeB);
    y.dataSync();
    const secs = (performance.now() - t0) / 1000;
    y.dispose();
    if (r > 0 || reps === 0) best = Math.max(best, (2 * m * k * n) / secs / 1e9);
  }
  tf.dispose([a, b]);
  return best;
}

/** FLOPs per cycle per core of a path: 2 FMA pipes × lanes × 2, except where the vendor halves it. */
export function flopsPerCycle(isa: string, cpu: string): { flops: number; note: string } {
  if (isa === 'avx512') {
    // Zen 4 runs 512-bit FMAs on its two 256-bit pipes; Intel server parts have two 512-bit FMA units.
    if (/AMD/i.test(cpu)) return { flops: 32, note: 'Zen 4: 2 x 256-bit FMA pipes (Zen 5 doubles this)' };
    return { flops: 64, note: '2 x 512-bit FMA units (32 on parts with one)' };
  }
  if (isa === 'avx2') return { flops: 32, note: '2 x 256-bit FMA units' };
  return { flops: 16, note: 'x86-64 baseline SSE2: 128-bit mul and add on 2 pipes each, no FMA' };
}

/**
 * Clock in GHz: the mean of /proc/cpuinfo's current "cpu MHz" (os.cpus() speed elsewhere). Virtual
 * machines often show the nominal clock, not the boost one, so the ceiling can be exceeded.
 */
export function clockGHz(): number {
  if (existsSync('/proc/cpuinfo')) {
    const mhz = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => /^cpu MHz/.test(l)).map((l) => Number(l.split(':')[1]));
    if (mhz.length) return mhz.reduce((p, x) => p + x, 0) / mhz.length / 1000;
  }
  return (cpus()[0]?.speed ?? 0) / 1000;
}

/** Theoretical sgemm ceiling of `threads` cores on a path, with how it was derived. */
export function sgemmCeiling(isa: string, cpu: string, threads: number): { gflops: number; how: string } {
  const ghz = clockGHz(), f = flopsPerCycle(isa, cpu);
  const cores = Math.min(threads, availableParallelism());
  return { gflops: cores * ghz * f.flops, how: `${cores} core${cores === 1 ? '' : 's'} x ${ghz.toFixed(2)} GHz x ${f.flops} FLOP/cycle (${f.note})` };
}

/**
 * Largest error of the bf16 products against float64 on float32 operands (first rows of 64x2048x2048
 * x·Wᵀ), relative to the largest output: what rounding weights and activations to bf16 costs.
 */
export function bf16Error(addon: NativeAddon): number {
  const m = 64, n = 2048, k = 2048, rows = 4;
  const a = random(m * k, 3), w = random(n * k, 4);
  const data = new Int32Array(bf16PackedWords(n, k)), c = new Float32Array(m * n);
  addon.packBf16({ src: w, type: F32, rows: n, cols: k, out: data });
  addon.linear({ x: a, m, weight: { format: BF16P, rows: n, cols: k, data }, y: c });
  let err = 0, top = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * w[j * k + p];
      err = Math.max(err, Math.abs(s - c[i * n + j]));
      top = Math.max(top, Math.abs(s));
    }
  }
  return err / top;
}

/** The measured ceilings of this process's kernels: float32 FMA, bf16 dot products, int8 dot products (0: absent). */
export function measuredCeilings(addon: NativeAddon, seconds = 0.5): { fp32: { wall: number; perCpuSecond: number }; bf16: { wall: number; perCpuSecond: number }; int8: { wall: number; perCpuSecond: number } } {
  return { fp32: addon._peak(0, seconds), bf16: addon._peak(1, seconds), int8: addon._peak(2, seconds) };
}

/** Child mode: time every shape (only bf16 ones with --bf16) on this process's path and print one JSON line. */
function child(threads: number[], reps: number, quick: boolean, bf16: boolean): void {
  const loaded = loadNativeAddon();
  if (!loaded.addon) throw new Error(loaded.reason);
  const addon = loaded.addon;
  const rows: { shape: string; threads: number; wall: number; cpu: number }[] = [];
  const shapes = SHAPES.filter((x) => (!quick || x.m * x.n * x.k <= 2048 ** 3 / 4) && (!bf16 || x.products === 'bf16'));
  for (const t of threads) {
    addon.setThreads(t);
    for (const s of shapes) rows.push({ shape: s.name, threads: t, ...timeNative(addon, s, reps) });
  }
  console.log(JSON.stringify({ info: addon.info(), rows, bf16Error: bf16Error(addon) }));
}

type ChildResult = { rows: { shape: string; threads: number; wall: number; cpu: number }[]; bf16Error: number };

/** Runs this bench as a child with extra environment (MKA_ISA is read when the addon loads). */
function runChild(env: Record<string, string>, args: string[]): ChildResult | string {
  const script = fileURLToPath(import.meta.url).replace(/bench\/sgemm\.ts$/, 'bench.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, 'sgemm', '--child', ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) return (r.stderr || r.stdout).trim().split('\n').pop() ?? 'no output';
  return JSON.parse(line) as ChildResult;
}

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('threads', { type: 'number', array: true, default: [1, availableParallelism()], describe: 'thread counts to time' })
    .option('reps', { type: 'number', default: 3 })
    .option('quick', { type: 'boolean', default: false, describe: 'skip the largest shapes' })
    .option('wasm', { type: 'boolean', default: true, describe: 'also time plain WebAssembly' })
    .option('child', { type: 'boolean', default: false, hidden: true })
    .option('bf16', { type: 'boolean', default: false, hidden: true })
    .parseSync();
  const threads = [...new Set(a.threads)];
  if (a.child) return child(threads, a.reps, a.quick, a.bf16);
  const loaded = loadNativeAddon();
  if (!loaded.addon) {
    console.log(`native kernels: n/a (${loaded.reason})`);
  } else {
    const info = loaded.addon.info();
    console.log(`native kernels: ${loaded.reason}; default ${info.threads} threads of ${info.procs} processors; ` +
      `avx512_bf16 ${info.cpuHas.bf16 ? 'present' : 'absent'}; VNNI ${info.cpuHas.vnni ? 'present' : 'absent'}; AMX ${info.cpuHas.amx ? `present${info.amxNote ? ` but unused: ${info.amxNote}` : ''}` : 'absent'}`);
    const ceil = measuredCeilings(loaded.addon);
    console.log(`measured ceilings (register-only loops, ${info.threads} threads): float32 FMA ${ceil.fp32.wall.toFixed(1)} GFLOP/s wall ` +
      `(${ceil.fp32.perCpuSecond.toFixed(1)} per CPU-second)` + (ceil.bf16.wall ? `, vdpbf16ps ${ceil.bf16.wall.toFixed(1)} (${ceil.bf16.perCpuSecond.toFixed(1)})` : '') +
      (ceil.int8.wall ? `, vpdpbusd ${ceil.int8.wall.toFixed(1)} GOP/s (${ceil.int8.perCpuSecond.toFixed(1)})` : ''));
    const paths = ['avx512', 'avx2', 'generic'].slice(['avx512', 'avx2', 'generic'].indexOf(info.isa));
    const common = ['--reps', String(a.reps), '--threads', ...threads.map(String)];
    const results: Record<string, ChildResult> = {};
    for (const isa of paths) {
      const res = runChild({ MKA_ISA: isa }, [...common, ...(a.quick || isa === 'generic' ? ['--quick'] : [])]);
      if (typeof res === 'string') {
        console.log(`${isa}: failed (${res})`);
        continue;
      }
      results[isa] = res;
      for (const t of threads) {
        const ceiling = sgemmCeiling(isa, info.cpu, t);
        console.log(`\n${isa} path, ${t} thread${t === 1 ? '' : 's'}; ceiling ${ceiling.gflops.toFixed(1)} GFLOP/s = ${ceiling.how}`);
        for (const row of res.rows.filter((x) => x.threads === t)) {
          const perCore = ceiling.gflops / Math.min(t, availableParallelism());
          console.log(`  ${row.shape.padEnd(30)} ${row.wall.toFixed(1).padStart(7)} GFLOP/s wall (${((100 * row.wall) / ceiling.gflops).toFixed(0)}% of ceiling), ` +
            `${row.cpu.toFixed(1)} per CPU-second (${((100 * row.cpu) / perCore).toFixed(0)}% of one core's)`);
        }
      }
    }
    console.log('');
    if (info.bf16Kernel === 'avx512bf16' || info.bf16Kernel === 'amx') {
      const dot = runChild({}, [...common, '--bf16']);
      if (typeof dot === 'string') console.log(`bf16 products (${info.bf16Kernel}): failed (${dot})`);
      else {
        for (const row of dot.rows) {
          const compare = SHAPES.find((x) => x.name === row.shape)?.compare;
          const base = results.avx512?.rows.find((x) => x.shape === compare && x.threads === row.threads);
          const core = ceil.bf16.perCpuSecond / info.threads;
          console.log(`bf16 products (${info.bf16Kernel}), ${row.shape}, ${row.threads} thread${row.threads === 1 ? '' : 's'}: ${row.wall.toFixed(1)} GFLOP/s wall, ` +
            `${row.cpu.toFixed(1)} per CPU-second${core ? ` (${((100 * row.cpu) / core).toFixed(0)}% of one core's bf16 ceiling)` : ''}` +
            (base ? ` = ${(row.cpu / base.cpu).toFixed(2)}x the float32 products of ${compare}` : ''));
        }
        console.log(`bf16 products' error vs float64 on float32 operands (relative to the largest output): ${dot.bf16Error.toExponential(2)}`);
      }
    } else {
      console.log(`bf16 products: ${info.bf16Kernel} (no avx512_bf16 or AMX here): float32 FMAs on bf16 values, so --compute auto keeps BF16 models in float32`);
    }
    const blas = ['/usr/lib/x86_64-linux-gnu/libopenblas.so.0', '/usr/lib/libopenblas.so.0', '/usr/lib64/libopenblas.so.0'].find(existsSync);
    if (!blas) console.log('OpenBLAS: not installed (not needed: mka\'s kernels are its own), no comparison');
    else {
      for (const t of threads) {
        for (const s of SHAPES.filter((x) => x.type === F32 && x.m > 1 && (!a.quick || x.m * x.n * x.k <= 2048 ** 3 / 4))) {
          const r = timeOpenBlas(loaded.addon as BlasProbe, blas, s, t, a.reps);
          const mine = results[info.isa]?.rows.find((x) => x.shape === s.name && x.threads === t);
          console.log(`OpenBLAS (${blas}, dlopen), ${s.name}, ${t} thread${t === 1 ? '' : 's'}: ` +
            (r ? `${r.wall.toFixed(1)} GFLOP/s wall, ${r.cpu.toFixed(1)} per CPU-second${mine ? `; mka ${info.isa} / OpenBLAS = ${(mine.cpu / r.cpu).toFixed(2)} per CPU-second` : ''}` : 'failed to load'));
        }
      }
    }
  }
  if (!a.wasm) return;
  await initBackend('wasm');
  const w = 1024;
  console.log(`tf.matMul plain wasm, ${w}³ A·B : ${timeMatMul(w, w, w, false, 1).toFixed(1)} GFLOP/s`);
  console.log(`tf.matMul plain wasm, 512x1024x1024 A·Bᵀ: ${timeMatMul(512, w, w, true, 0).toFixed(1)} GFLOP/s`);
}
