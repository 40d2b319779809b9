/**
 * Matrix-product speed on this machine:
 *   npm run bench -- sgemm [--size 2048] [--threads N] [--reps 3] [--wasm-size 1024]
 * Prints the BLAS sgemm ceiling through the native addon, tf.matMul on the native path, and tf.matMul
 * on plain WebAssembly (A·B, which tfjs runs in XNNPACK, and A·Bᵀ, the model's layout, which it runs
 * in a plain loop, at a smaller size so it finishes).
 */
import * as tf from '@tensorflow/tfjs';
import yargs from 'yargs';
import { availableParallelism } from 'node:os';
import { initBackend } from '../../src/runtime/backend.ts';
import { loadBlasAddon, measureSgemmCeiling } from '../../src/runtime/native-matmul.ts';

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

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('size', { type: 'number', default: 2048, describe: 'square product size for the BLAS and native rows' })
    .option('wasm-size', { type: 'number', default: 1024, describe: 'size for plain WebAssembly A·Bᵀ (it is slow)' })
    .option('threads', { type: 'number', default: availableParallelism() })
    .option('reps', { type: 'number', default: 3 })
    .parseSync();
  const n = a.size, w = a['wasm-size'];
  const fmt = (g: number | null) => (g === null ? 'n/a' : `${g.toFixed(1)} GFLOP/s`);
  const loaded = loadBlasAddon();
  const ceiling = measureSgemmCeiling({ size: n, repeats: a.reps, threads: a.threads });
  console.log(`BLAS sgemm (${loaded.reason}), ${n}³ A·Bᵀ, ${a.threads} threads: ${fmt(ceiling)}`);
  const info = await initBackend('auto', { threads: a.threads });
  if (info.nativeMatMul) {
    console.log(`tf.matMul native path, ${n}³ A·B : ${fmt(timeMatMul(n, n, n, false, a.reps))}`);
    console.log(`tf.matMul native path, ${n}³ A·Bᵀ: ${fmt(timeMatMul(n, n, n, true, a.reps))}`);
  } else {
    console.log(`tf.matMul native path: n/a (${info.description})`);
  }
  await initBackend('wasm');
  const nn = timeMatMul(n, n, n, false, 1);
  const nt = timeMatMul(w, w, w, true, 0);
  console.log(`tf.matMul plain wasm, ${n}³ A·B : ${fmt(nn)}`);
  console.log(`tf.matMul plain wasm, ${w}³ A·Bᵀ: ${fmt(nt)}`);
  if (ceiling !== null) console.log(`ceiling / plain wasm: ${(ceiling / nn).toFixed(1)}× (A·B), ${(ceiling / nt).toFixed(1)}× (A·Bᵀ)`);
}
