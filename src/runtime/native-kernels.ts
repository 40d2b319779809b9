/**
 * The `native` tfjs backend: tfjs's plain-JS `cpu` backend (tensors are ordinary typed arrays, so only
 * RAM bounds them, not the 4 GB WebAssembly heap) with mka's native kernels (native-addon.ts)
 * registered on it: BatchMatMul and _FusedMatMul, and the decoder's custom kernels (src/model/ops.ts:
 * MkaLinear with float32 or 16-bit weights, MkaAttention, MkaRmsNorm, MkaRope, MkaSiluMul,
 * MkaGatherRows, and MkaDecoderLayer: a whole decoder layer in one call). Every other op is the cpu backend's own kernel. The kernels compute in place on the
 * tensors' arrays and write into arrays the output tensors then own: nothing is copied.
 */
import * as tf from '@tensorflow/tfjs';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { availableParallelism } from 'node:os';
import { describeAddon, loadNativeAddon, type ElementType, type NativeAddon } from './native-addon.ts';
import { matMulKernelFunc, planMatMul } from './native-matmul.ts';
import { KERNELS } from './kernel-names.ts';

/** The tfjs backend name. */
export const NATIVE_BACKEND = 'native';

type Values = Float32Array | Int32Array | Uint8Array;

const size = (dims: readonly number[]) => dims.reduce((p, d) => p * d, 1);

/** The typed array holding a tensor's values on the cpu backend. */
function values(backend: object, t: tf.TensorInfo): Values {
  const v = (backend as unknown as MathBackendCPU).data.get(t.dataId)?.values;
  if (!v || !ArrayBuffer.isView(v)) throw new Error('native kernels: tensor data is not a typed array on the native backend');
  return v as Values;
}

function float32(backend: object, t: tf.TensorInfo, what: string): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`native kernels: ${what} must be float32, got ${t.dtype}`);
  return values(backend, t) as Float32Array;
}

const output = (backend: object, shape: number[], data: Float32Array) =>
  (backend as unknown as MathBackendCPU).makeTensorInfo(shape, 'float32', data);

/** The inner dimension of a weight tensor: its columns, or twice them for packed 16-bit words. */
const weightCols = (w: tf.TensorInfo, type: number) => (type === 0 ? w.shape[1] : 2 * w.shape[1]);

function linearKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, w, bias, residual } = inputs as Record<string, tf.TensorInfo | undefined>;
    const type = (attrs as { wType: ElementType }).wType;
    const k = x!.shape[x!.shape.length - 1];
    const n = w!.shape[0];
    if (w!.shape.length !== 2 || weightCols(w!, type) !== k) throw new Error(`MkaLinear: weight [${w!.shape}] (type ${type}) does not take inputs of width ${k}`);
    if (type !== 0 && w!.dtype !== 'int32') throw new Error('MkaLinear: 16-bit weights come packed in an int32 tensor');
    const m = size(x!.shape) / k;
    const outShape = [...x!.shape.slice(0, -1), n];
    const out = residual ? Float32Array.from(float32(backend, residual, 'residual')) : new Float32Array(m * n);
    if (residual && out.length !== m * n) throw new Error(`MkaLinear: residual [${residual.shape}] does not match the output [${outShape}]`);
    const b = bias ? float32(backend, bias, 'bias') : null;
    if (m > 0 && n > 0) {
      addon.matmul(float32(backend, x!, 'x'), 0, values(backend, w!), 0, type, out, 0, m, n, k, false, true, 1, null,
        b, 0, b ? b.length : 0, 0, !!residual);
    }
    return output(backend, outShape, out);
  };
}

function attentionKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { q, k, v } = inputs as Record<string, tf.TensorInfo>;
    const { window, scale } = attrs as { window: number; scale: number };
    const [B, T, nH, hd] = q.shape;
    const [kvB, nKV, S] = k.shape;
    const out = new Float32Array(size(q.shape));
    addon.attention(float32(backend, q, 'q'), 0, float32(backend, k, 'k'), 0, float32(backend, v, 'v'), 0, out, 0,
      B, T, S, nH, nKV, hd, kvB, window, scale);
    return output(backend, q.shape, out);
  };
}

function rmsNormKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, w } = inputs as Record<string, tf.TensorInfo>;
    const n = x.shape[x.shape.length - 1];
    if (size(w.shape) !== n) throw new Error(`MkaRmsNorm: weight [${w.shape}] for rows of ${n}`);
    const out = new Float32Array(size(x.shape));
    addon.rmsnorm(float32(backend, x, 'x'), 0, float32(backend, w, 'w'), 0, 0, out, 0, out.length / n, n, (attrs as { eps: number }).eps);
    return output(backend, x.shape, out);
  };
}

function ropeKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { x, cos, sin } = inputs as Record<string, tf.TensorInfo>;
    const [B, T, heads, hd] = x.shape;
    if (cos.shape[0] !== T || cos.shape[1] !== hd) throw new Error(`MkaRope: tables [${cos.shape}] for input [${x.shape}]`);
    const out = Float32Array.from(float32(backend, x, 'x'));
    addon.rope(out, 0, float32(backend, cos, 'cos'), 0, float32(backend, sin, 'sin'), 0, B, T, heads, hd);
    return output(backend, x.shape, out);
  };
}

function siluMulKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { gate, up } = inputs as Record<string, tf.TensorInfo>;
    if (size(gate.shape) !== size(up.shape)) throw new Error(`MkaSiluMul: gate [${gate.shape}] and up [${up.shape}] differ`);
    const out = new Float32Array(size(gate.shape));
    addon.siluMul(float32(backend, gate, 'gate'), 0, float32(backend, up, 'up'), 0, out, 0, out.length);
    return output(backend, gate.shape, out);
  };
}

function gatherKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { table, ids } = inputs as Record<string, tf.TensorInfo>;
    const type = (attrs as { tType: ElementType }).tType;
    const vocab = table.shape[0], n = weightCols(table, type);
    const idv = values(backend, ids) as Int32Array;
    if (ids.dtype !== 'int32') throw new Error('MkaGatherRows: ids must be int32');
    for (const id of idv) if (id < 0 || id >= vocab) throw new Error(`MkaGatherRows: id ${id} outside 0..${vocab - 1}`);
    const out = new Float32Array(idv.length * n);
    addon.gatherRows(values(backend, table), 0, type, vocab, n, idv, out, 0);
    return output(backend, [idv.length, n], out);
  };
}

/** Input names of MkaDecoderLayer's projections, in the addon's order (q, k, v, o, gate, up, down). */
const PROJECTIONS = ['q', 'k', 'v', 'o', 'g', 'u', 'd'] as const;

function decoderLayerKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const t = inputs as Record<string, tf.TensorInfo | undefined>;
    const { nH, nKV, hd, eps, window, scale, wType, keep } = attrs as Record<string, number>;
    const x = t.x!, wg = t.wg!;
    const [B, T, H] = x.shape;
    const F = wg.shape[0];
    const S0 = t.pastK ? t.pastK.shape[2] : 0, kvB = t.pastK ? t.pastK.shape[0] : 1;
    for (const p of PROJECTIONS) {
      const w = t[`w${p}`]!;
      if (w.dtype !== (wType === 0 ? 'float32' : 'int32')) throw new Error(`MkaDecoderLayer: weight w${p} of dtype ${w.dtype} for type ${wType}`);
    }
    const h = new Float32Array(B * T * H);
    const kv = keep ? B * nKV * (S0 + T) * hd : 0;
    const kOut = keep ? new Float32Array(kv) : null, vOut = keep ? new Float32Array(kv) : null;
    const f32 = (name: string) => (t[name] ? float32(backend, t[name]!, name) : null);
    const views = [
      float32(backend, x, 'x'), h, f32('norm1'), f32('norm2'),
      ...PROJECTIONS.map((p) => values(backend, t[`w${p}`]!)), ...PROJECTIONS.map((p) => f32(`b${p}`)),
      f32('pastK'), f32('pastV'), f32('cos'), f32('sin'), kOut, vOut,
    ];
    addon.decoderLayer(views, [B, T, H, nH, nKV, hd, F, S0, kvB, wType, window, eps, scale]);
    const out = [output(backend, [B, T, H], h)];
    if (kOut && vOut) out.push(output(backend, [B, nKV, S0 + T, hd], kOut), output(backend, [B, nKV, S0 + T, hd], vOut));
    return out;
  };
}

/**
 * a·b (+ bias, activation) in the addon; null when the case belongs to the cpu kernel (non-float32,
 * rank < 2, empty, other activations or bias shapes).
 */
function matMul(
  addon: NativeAddon, backend: object, a: tf.TensorInfo, b: tf.TensorInfo, transA: boolean, transB: boolean,
  bias: tf.TensorInfo | undefined, act: number,
): tf.TensorInfo | null {
  const plan = planMatMul(a, b, transA, transB, bias);
  if (!plan) return null;
  const { m, n, k, batch, outDims, idx } = plan;
  const out = new Float32Array(batch * m * n);
  const bv = bias ? float32(backend, bias, 'bias') : null;
  addon.matmul(float32(backend, a, 'a'), 0, float32(backend, b, 'b'), 0, 0, out, 0, m, n, k, transA, transB, batch, idx,
    bv, 0, bv ? bv.length : 0, act, false);
  return output(backend, [...outDims, m, n], out);
}

/**
 * tfjs's cpu backend, without its first-use console advice to install tfjs-node: here the cpu
 * backend's tensors are the point (RAM-sized, computed by mka's native kernels), and the advice
 * would be a stray line on stderr of every command.
 */
function quietCpuBackend(): MathBackendCPU {
  const backend = new MathBackendCPU();
  (backend as unknown as { firstUse: boolean }).firstUse = false;
  return backend;
}

/**
 * Registers the `native` backend (once per process) and sets the addon's thread count (default: all
 * cores). Does not switch to it. Returns why not when the addon does not load.
 */
export function registerNativeBackend(opts: { threads?: number } = {}): { ok: boolean; reason: string } {
  const threads = opts.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) return { ok: false, reason: `--threads ${threads} is not a positive integer` };
  const loaded = loadNativeAddon();
  if (!loaded.addon) return { ok: false, reason: loaded.reason };
  const addon = loaded.addon;
  addon.setThreads(Math.min(threads, 4 * addon.info().procs));
  if (!tf.findBackendFactory(NATIVE_BACKEND)) {
    // Negative priority: tfjs never picks it by itself; initBackend asks for it.
    tf.registerBackend(NATIVE_BACKEND, () => quietCpuBackend(), -1);
    const own: Record<string, tf.KernelFunc> = {
      [KERNELS.linear]: linearKernel(addon),
      [KERNELS.attention]: attentionKernel(addon),
      [KERNELS.rmsNorm]: rmsNormKernel(addon),
      [KERNELS.rope]: ropeKernel(addon),
      [KERNELS.siluMul]: siluMulKernel(addon),
      [KERNELS.gather]: gatherKernel(addon),
      [KERNELS.decoderLayer]: decoderLayerKernel(addon),
    };
    for (const k of tf.getKernelsForBackend('cpu')) {
      let kernelFunc = k.kernelFunc;
      if (k.kernelName === 'BatchMatMul' || k.kernelName === '_FusedMatMul') {
        kernelFunc = matMulKernelFunc(k.kernelName, (backend, a, b, ta, tb, bias, act) => matMul(addon, backend, a, b, ta, tb, bias, act), k.kernelFunc);
      }
      tf.registerKernel({ ...k, backendName: NATIVE_BACKEND, kernelFunc });
    }
    for (const [kernelName, kernelFunc] of Object.entries(own)) tf.registerKernel({ kernelName, backendName: NATIVE_BACKEND, kernelFunc });
  }
  const n = addon.info().threads;
  return { ok: true, reason: `${describeAddon(addon)}, ${n} thread${n === 1 ? '' : 's'}` };
}
