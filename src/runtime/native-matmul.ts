/**
 * Native BLAS matrix products for the wasm backend. The addon (native/mka_blas.c, built by
 * scripts/build-native.mjs at install) runs OpenBLAS sgemm directly on the wasm heap: operands are
 * read where tfjs keeps them and the output is written into a tensor made by the wasm backend, so
 * nothing is copied. BatchMatMul and _FusedMatMul (linear/relu/relu6, rank-1 bias) are replaced on
 * the `wasm` backend; every other op, and the cases these kernels do not take, stay in WebAssembly.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

/** What the compiled addon exports (see native/mka_blas.c). */
export interface BlasAddon {
  gemm(
    heap: ArrayBufferView, aOff: number, bOff: number, cOff: number, m: number, n: number, k: number,
    transA: boolean, transB: boolean, batch: number, idx: Int32Array | null, biasOff: number, biasLen: number, act: number,
  ): void;
  setThreads(n: number): void;
  info(): { corename: string; config: string; threads: number; procs: number };
}

/** The addon's default location; MKA_NATIVE_ADDON overrides it (tests point it at a missing file). */
export const DEFAULT_ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/mka_blas.node', import.meta.url));

/** Marks our kernel functions and keeps the wasm kernel they replaced. */
const ORIGINAL = Symbol.for('mka.nativeMatMul.original');
const KERNELS = ['BatchMatMul', '_FusedMatMul'] as const;
/** Fused activations done natively, with the code the addon takes. */
const ACTIVATIONS: Record<string, number> = { linear: 0, relu: 1, relu6: 2 };

type NativeKernelFunc = tf.KernelFunc & { [ORIGINAL]?: tf.KernelConfig };

/** The parts of tfjs's BackendWasm these kernels use. */
interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

/**
 * The OpenBLAS kernel to ask for, from /proc/cpuinfo's flags: OpenBLAS's own detection picks a
 * generic, slow kernel on some virtual CPUs. Null when nothing better than its default is known.
 */
export function chooseCoretype(cpuinfo: string): string | null {
  const flagsLine = cpuinfo.split('\n').find((l) => /^flags\s*:/.test(l));
  if (!flagsLine) return null;
  const flags = new Set(flagsLine.replace(/^flags\s*:/, '').trim().split(/\s+/));
  if (['avx512f', 'avx512bw', 'avx512vl', 'avx512dq'].every((f) => flags.has(f))) return 'SKYLAKEX';
  if (flags.has('avx2') && flags.has('fma')) return /AuthenticAMD/.test(cpuinfo) ? 'ZEN' : 'HASWELL';
  if (flags.has('avx')) return 'SANDYBRIDGE';
  return null;
}

/**
 * Loads the addon (MKA_NATIVE_ADDON or the default path). Sets OPENBLAS_CORETYPE from the CPU's
 * flags first, unless the user set it, since OpenBLAS reads it once when it is loaded.
 */
export function loadBlasAddon(): { addon: BlasAddon; reason: string } | { addon: null; reason: string } {
  const path = process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH;
  if (!existsSync(path)) {
    return { addon: null, reason: `native addon not built (${path} missing; needs a C compiler and libopenblas-dev at npm ci, or npm run build:native)` };
  }
  if (process.env.OPENBLAS_CORETYPE === undefined && existsSync('/proc/cpuinfo')) {
    const core = chooseCoretype(readFileSync('/proc/cpuinfo', 'utf8'));
    if (core) process.env.OPENBLAS_CORETYPE = core;
  }
  try {
    const addon = createRequire(import.meta.url)(path) as BlasAddon;
    return { addon, reason: `OpenBLAS ${addon.info().corename}` };
  } catch (e) {
    return { addon: null, reason: `native addon failed to load (${e instanceof Error ? e.message.split('\n')[0] : String(e)})` };
  }
}

/** Pairs of (a, b) batch indices for each output batch, broadcasting a's and b's batch dims. */
export function broadcastBatchIndex(outDims: number[], aDims: number[], bDims: number[]): Int32Array {
  const total = outDims.reduce((p, d) => p * d, 1);
  const idx = new Int32Array(2 * total);
  const rank = outDims.length;
  for (let flat = 0; flat < total; flat++) {
    let rest = flat;
    let ia = 0, ib = 0, strideA = 1, strideB = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rest % outDims[d];
      rest = Math.floor(rest / outDims[d]);
      const da = aDims[d - (rank - aDims.length)] ?? 1;
      const db = bDims[d - (rank - bDims.length)] ?? 1;
      if (d >= rank - aDims.length) {
        ia += (da === 1 ? 0 : coord) * strideA;
        strideA *= da;
      }
      if (d >= rank - bDims.length) {
        ib += (db === 1 ? 0 : coord) * strideB;
        strideB *= db;
      }
    }
    idx[2 * flat] = ia;
    idx[2 * flat + 1] = ib;
  }
  return idx;
}

const sameDims = (x: number[], y: number[]) => x.length === y.length && x.every((d, i) => d === y[i]);
const size = (dims: number[]) => dims.reduce((p, d) => p * d, 1);

/**
 * a·b (+ bias, activation) through the addon; null when this case belongs to the wasm kernel
 * (non-float32, empty, unsupported activation or bias shape).
 */
function nativeMatMul(
  addon: BlasAddon, backend: WasmBackendLike, a: tf.TensorInfo, b: tf.TensorInfo,
  transposeA: boolean, transposeB: boolean, bias: tf.TensorInfo | undefined, act: number,
): tf.TensorInfo | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32' || a.shape.length < 2 || b.shape.length < 2) return null;
  const ra = a.shape.length, rb = b.shape.length;
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) return null;
  const aDims = a.shape.slice(0, -2), bDims = b.shape.slice(0, -2);
  const outDims = tf.broadcast_util.assertAndGetBroadcastShape(aDims, bDims);
  const batch = size(outDims);
  if (m * n * k * batch === 0) return null;
  if (bias && (bias.dtype !== 'float32' || bias.shape.length !== 1 || (bias.shape[0] !== n && bias.shape[0] !== 1))) return null;
  const idx = sameDims(aDims, bDims) || (size(aDims) === 1 && size(bDims) === 1) ? null : broadcastBatchIndex(outDims, aDims, bDims);
  const offset = (t: tf.TensorInfo) => {
    const data = backend.dataIdMap.get(t.dataId);
    if (!data) throw new Error('native matmul: tensor data is not on the wasm backend');
    return data.memoryOffset;
  };
  const out = backend.makeOutput([...outDims, m, n], 'float32');
  // Read the heap after makeOutput: its allocation may grow wasm memory and replace the buffer.
  addon.gemm(
    backend.wasm.HEAPU8, offset(a), offset(b), offset(out), m, n, k, transposeA, transposeB, batch, idx,
    bias ? offset(bias) : -1, bias ? bias.shape[0] : 0, act,
  );
  return out;
}

function batchMatMulKernel(addon: BlasAddon, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const out = nativeMatMul(addon, args.backend as unknown as WasmBackendLike, a, b, !!transposeA, !!transposeB, undefined, 0);
    return out ?? original(args);
  };
}

function fusedMatMulKernel(addon: BlasAddon, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
    const act = ACTIVATIONS[activation ?? 'linear'];
    if (act === undefined || preluActivationWeights || !a || !b) return original(args);
    const out = nativeMatMul(addon, args.backend as unknown as WasmBackendLike, a, b, !!transposeA, !!transposeB, bias, act);
    return out ?? original(args);
  };
}

/** Whether the native kernels are the ones registered on the wasm backend now. */
export function nativeMatMulInstalled(): boolean {
  return KERNELS.every((name) => (tf.getKernel(name, 'wasm')?.kernelFunc as NativeKernelFunc | undefined)?.[ORIGINAL] !== undefined);
}

/**
 * Registers the native BatchMatMul and _FusedMatMul on the wasm backend (call after
 * tf.setBackend('wasm')); `threads` defaults to all cores. Returns why not when it cannot.
 */
export function installNativeMatMul(opts: { threads?: number } = {}): { ok: boolean; reason: string } {
  if (tf.getBackend() !== 'wasm') return { ok: false, reason: `backend is ${tf.getBackend()}, not wasm` };
  uninstallNativeMatMul();
  const threads = opts.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) return { ok: false, reason: `--threads ${threads} is not a positive integer` };
  const loaded = loadBlasAddon();
  if (!loaded.addon) return { ok: false, reason: loaded.reason };
  const addon = loaded.addon;
  addon.setThreads(threads);
  const originals = KERNELS.map((name) => tf.getKernel(name, 'wasm'));
  if (originals.some((k) => !k)) return { ok: false, reason: 'the wasm backend has no BatchMatMul/_FusedMatMul kernel to replace' };
  KERNELS.forEach((name, i) => {
    const original = originals[i] as tf.KernelConfig;
    const make = name === 'BatchMatMul' ? batchMatMulKernel : fusedMatMulKernel;
    const kernelFunc: NativeKernelFunc = make(addon, original.kernelFunc);
    kernelFunc[ORIGINAL] = original;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...original, kernelFunc });
  });
  return { ok: true, reason: `${loaded.reason}, ${addon.info().threads} thread${addon.info().threads === 1 ? '' : 's'}` };
}

/** Puts the plain WebAssembly kernels back (no-op when the native ones are not installed). */
export function uninstallNativeMatMul(): void {
  for (const name of KERNELS) {
    const original = (tf.getKernel(name, 'wasm')?.kernelFunc as NativeKernelFunc | undefined)?.[ORIGINAL];
    if (!original) continue;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel(original);
  }
}

/**
 * This machine's sgemm ceiling in GFLOP/s: the best of a few size³ float32 products
 * (C = A·Bᵀ, the model's layout) through the addon's BLAS, on `threads` threads (default all
 * cores; restored after). Null when the addon is not available.
 */
export function measureSgemmCeiling(opts: { size?: number; repeats?: number; threads?: number } = {}): number | null {
  const loaded = loadBlasAddon();
  if (!loaded.addon) return null;
  const addon = loaded.addon;
  const n = opts.size ?? 2048;
  const repeats = opts.repeats ?? 5;
  const before = addon.info().threads;
  addon.setThreads(opts.threads ?? availableParallelism());
  const heap = new Float32Array(3 * n * n);
  for (let i = 0, x = 1; i < 2 * n * n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    heap[i] = (x >>> 8) / 2 ** 24 - 0.5;
  }
  const bytes = 4 * n * n;
  let best = 0;
  try {
    for (let r = 0; r <= repeats; r++) {
      const t0 = process.hrtime.bigint();
      addon.gemm(heap, 0, bytes, 2 * bytes, n, n, n, false, true, 1, null, -1, 0, 0);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r > 0) best = Math.max(best, (2 * n * n * n) / seconds / 1e9);
    }
  } finally {
    addon.setThreads(before);
  }
  return best;
}
