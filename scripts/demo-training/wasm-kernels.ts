/**
 * Two kernel additions that make training on the tfjs WebAssembly backend practical:
 *
 * - `UnsortedSegmentSum`, which the wasm backend lacks and the gradient of `tf.gather` (the embedding
 *   lookup) needs.
 * - A `BatchMatMul` that runs every product through the backend's fast path (one 2-D, untransposed
 *   product): the stock kernel is about ten times slower when an operand is transposed or the product
 *   is batched, and the decoder (HF [out, in] weights, x·Wᵀ) and its gradients are all of that kind.
 *   Operands are copied (and transposed) slice by slice, multiplied, and copied into the output.
 *
 * Both are registered for the wasm backend only, once per process; `installWasmTrainingKernels` is a
 * no-op on other backends.
 */
import { tf } from '../../src/runtime/tf.ts';

interface WasmModule {
  HEAPF32: Float32Array;
  HEAP32: Int32Array;
}
interface WasmBackend {
  wasm: WasmModule;
  dataIdMap: { get(id: unknown): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: Float32Array): tf.TensorInfo;
  disposeData(dataId: unknown): boolean;
}
type KernelArgs = { inputs: Record<string, tf.TensorInfo>; backend: unknown; attrs?: Record<string, unknown> };

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Offset (in floats) of a tensor's data in the wasm heap. */
function floatOffset(be: WasmBackend, t: tf.TensorInfo): number {
  return be.dataIdMap.get(t.dataId).memoryOffset / 4;
}

function unsortedSegmentSum({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const be = backend as WasmBackend;
  const { x, segmentIds } = inputs;
  const n = attrs!.numSegments as number;
  const inner = size(x.shape.slice(1));
  const count = size(segmentIds.shape);
  const out = be.makeOutput([n, ...x.shape.slice(1)], 'float32');
  const heap = be.wasm.HEAPF32, ids = be.wasm.HEAP32; // read after allocating: the heap may have grown
  const xo = floatOffset(be, x), io = floatOffset(be, segmentIds), oo = floatOffset(be, out);
  heap.fill(0, oo, oo + n * inner);
  for (let i = 0; i < count; i++) {
    const s = ids[io + i];
    if (s < 0 || s >= n) continue;
    const src = xo + i * inner, dst = oo + s * inner;
    for (let j = 0; j < inner; j++) heap[dst + j] += heap[src + j];
  }
  return out;
}

/**
 * Registers the kernels on the wasm backend (when it is the active one) unless already done;
 * `matMul: false` leaves BatchMatMul alone (e.g. when the native BLAS kernels replaced it).
 * Returns whether the sliced BatchMatMul is active.
 */
export function installWasmTrainingKernels(opts: { matMul?: boolean } = {}): boolean {
  if (tf.getBackend() !== 'wasm') return false;
  if (!tf.getKernel('UnsortedSegmentSum', 'wasm')) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum as tf.KernelFunc });
  }
  if (opts.matMul === false) return false;
  const current = tf.getKernel('BatchMatMul', 'wasm');
  if (!current) return false;
  if ((current.kernelFunc as { mkaSliced?: boolean }).mkaSliced) return true;
  const original = current.kernelFunc as (args: KernelArgs) => tf.TensorInfo;
  const transpose = tf.getKernel('Transpose', 'wasm')!.kernelFunc as (args: KernelArgs) => tf.TensorInfo;

  const sliced = (args: KernelArgs): tf.TensorInfo => {
    const be = args.backend as WasmBackend;
    const { a, b } = args.inputs;
    const tA = Boolean(args.attrs?.transposeA), tB = Boolean(args.attrs?.transposeB);
    const ra = a.shape.length, rb = b.shape.length;
    const [ar, ac] = [a.shape[ra - 2], a.shape[ra - 1]], [br, bc] = [b.shape[rb - 2], b.shape[rb - 1]];
    const batchA = size(a.shape.slice(0, -2)), batchB = size(b.shape.slice(0, -2));
    const batch = Math.max(batchA, batchB);
    if ((!tA && !tB && batch === 1) || (batchA !== batchB && batchA !== 1 && batchB !== 1) || a.dtype !== 'float32' || b.dtype !== 'float32') {
      return original(args);
    }
    const M = tA ? ac : ar, N = tB ? br : bc;
    const batchShape = (batchA >= batchB ? a : b).shape.slice(0, -2);
    const out = be.makeOutput([...batchShape, M, N], 'float32');
    // One 2-D operand slice, copied out of the heap and transposed when asked.
    const operand = (t: tf.TensorInfo, i: number, rows: number, cols: number, trans: boolean): tf.TensorInfo => {
      const n = rows * cols;
      const copy = be.makeOutput([rows, cols], 'float32');
      const src = floatOffset(be, t) + i * n;
      be.wasm.HEAPF32.copyWithin(floatOffset(be, copy), src, src + n);
      if (!trans) return copy;
      const tr = transpose({ inputs: { x: copy }, backend: be, attrs: { perm: [1, 0] } });
      be.disposeData(copy.dataId);
      return tr;
    };
    for (let i = 0; i < batch; i++) {
      const ai = operand(a, batchA === 1 ? 0 : i, ar, ac, tA);
      const bi = operand(b, batchB === 1 ? 0 : i, br, bc, tB);
      const ci = original({ inputs: { a: ai, b: bi }, backend: be, attrs: { transposeA: false, transposeB: false } });
      const co = floatOffset(be, ci);
      be.wasm.HEAPF32.copyWithin(floatOffset(be, out) + i * M * N, co, co + M * N);
      for (const t of [ai, bi, ci]) be.disposeData(t.dataId);
    }
    return out;
  };
  (sliced as { mkaSliced?: boolean }).mkaSliced = true;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({ ...current, kernelFunc: sliced as unknown as tf.KernelFunc });
  return true;
}
