/**
 * Native matrix products for the wasm backend. BatchMatMul and _FusedMatMul (linear/relu/relu6,
 * rank-1 bias) are replaced on the `wasm` backend by mka's own kernels (native-addon.ts), run
 * directly on the wasm heap: operands are read where tfjs keeps them and the output is written into
 * a tensor made by the wasm backend, so nothing is copied. Every other op, and the cases these
 * kernels do not take, stay in WebAssembly.
 */
import { tf } from './tf.ts';
import { flag } from './options.ts';
import { THREADS_OPTION } from './backend-choice.ts';
import { availableParallelism } from 'node:os';
import { loadNativeAddon, type NativeAddon } from './native-addon.ts';
import { currentProfile, plainProfile, registerProfile } from './profile.ts';

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

/** The shape of a batched product a·b the addon takes: sizes, output dims and broadcast batch pairs. */
export interface MatMulPlan {
  m: number;
  n: number;
  k: number;
  batch: number;
  outDims: number[];
  /** null (batch i uses a[i], b[i]) or the (a, b) index pairs of broadcastBatchIndex. */
  idx: Int32Array | null;
}

/**
 * How the addon computes a·b (+ bias); null when the case belongs to the backend's own kernel
 * (non-float32, rank < 2, empty, a bias that is not float32 of length 1 or n).
 */
export function planMatMul(
  a: tf.TensorInfo, b: tf.TensorInfo, transposeA: boolean, transposeB: boolean, bias: tf.TensorInfo | undefined,
): MatMulPlan | null {
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
  return { m, n, k, batch, outDims, idx };
}

/**
 * a·b (+ bias, activation) through the addon; null when this case belongs to the wasm kernel
 * (non-float32, empty, unsupported activation or bias shape).
 */
function nativeMatMul(
  addon: NativeAddon, backend: WasmBackendLike, a: tf.TensorInfo, b: tf.TensorInfo,
  transposeA: boolean, transposeB: boolean, bias: tf.TensorInfo | undefined, act: number,
): tf.TensorInfo | null {
  const plan = planMatMul(a, b, transposeA, transposeB, bias);
  if (!plan) return null;
  const { m, n, k, batch, outDims, idx } = plan;
  const offset = (t: tf.TensorInfo) => {
    const data = backend.dataIdMap.get(t.dataId);
    if (!data) throw new Error('native matmul: tensor data is not on the wasm backend');
    return data.memoryOffset;
  };
  const out = backend.makeOutput([...outDims, m, n], 'float32');
  // Read the heap after makeOutput: its allocation may grow wasm memory and replace the buffer.
  const heap = backend.wasm.HEAPU8;
  addon.matmul({
    a: heap, aOffset: offset(a), b: heap, bOffset: offset(b), c: heap, cOffset: offset(out), m, n, k, transA: transposeA, transB: transposeB,
    batch, idx, bias: bias ? heap : null, biasOffset: bias ? offset(bias) : 0, biasLength: bias ? bias.shape[0] : undefined, activation: act,
  });
  return out;
}

/** a·b (+ bias, fused activation code) on `backend`'s tensors; null hands the case back to the original kernel. */
export type MatMulRun = (
  backend: object, a: tf.TensorInfo, b: tf.TensorInfo, transA: boolean, transB: boolean, bias: tf.TensorInfo | undefined, act: number,
) => tf.TensorInfo | null;

/**
 * The BatchMatMul or _FusedMatMul kernel function that multiplies with `run` and falls back to
 * `original` for what `run` declines (and for activations the addon does not fuse).
 */
export function matMulKernelFunc(kernelName: 'BatchMatMul' | '_FusedMatMul', run: MatMulRun, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation?: string };
    const act = kernelName === 'BatchMatMul' ? 0 : ACTIVATIONS[activation ?? 'linear'];
    if (act === undefined || preluActivationWeights || !a || !b) return original(args);
    return run(args.backend, a, b, !!transposeA, !!transposeB, kernelName === 'BatchMatMul' ? undefined : bias, act) ?? original(args);
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
  if (!Number.isInteger(threads) || threads < 1) return { ok: false, reason: `${flag(THREADS_OPTION)} ${threads} is not a positive integer` };
  const loaded = loadNativeAddon();
  if (!loaded.addon) return { ok: false, reason: loaded.reason };
  const addon = loaded.addon;
  try {
    addon.setThreads(threads);
  } catch (e) {
    return { ok: false, reason: `${flag(THREADS_OPTION)} ${threads}: ${e instanceof Error ? e.message : String(e)}` };
  }
  const originals = KERNELS.map((name) => tf.getKernel(name, 'wasm'));
  if (originals.some((k) => !k)) return { ok: false, reason: 'the wasm backend has no BatchMatMul/_FusedMatMul kernel to replace' };
  KERNELS.forEach((name, i) => {
    const original = originals[i] as tf.KernelConfig;
    const run: MatMulRun = (backend, a, b, ta, tb, bias, act) => nativeMatMul(addon, backend as unknown as WasmBackendLike, a, b, ta, tb, bias, act);
    const kernelFunc: NativeKernelFunc = matMulKernelFunc(name, run, original.kernelFunc);
    kernelFunc[ORIGINAL] = original;
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...original, kernelFunc });
  });
  registerProfile(wasmProfile(true));
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
  if (tf.getBackend() === 'wasm') registerProfile(wasmProfile(false));
}

/**
 * The wasm backend's profile: its 4 GB heap; plain wasm multiplies fast only untransposed, so projections
 * are laid out as Wᵀ and other Hugging Face weights transposed per call, while mka's native matmul takes
 * x·Wᵀ directly (still transposing per call from 16 rows, so results do not depend on the layout).
 */
export function wasmProfile(nativeMatMul: boolean) {
  const compute = tf.getBackend() === 'wasm' ? currentProfile().compute : 'auto';
  const plain = plainProfile('wasm', compute);
  return nativeMatMul ? { ...plain, transposeFromRows: 16, transposedProjections: false } : plain;
}
