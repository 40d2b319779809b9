/**
 * The `native` tfjs backend: tfjs's plain-JS `cpu` backend (tensors are ordinary typed arrays, so only
 * RAM bounds them, not the 4 GB WebAssembly heap) with mka's native kernels (native-addon.ts)
 * registered on it: BatchMatMul and _FusedMatMul, and the decoder's custom kernels (src/model/ops.ts:
 * MkaLinear with float32, 16-bit or bf16-panel weights, MkaLinearQ with contract 1's packed integer
 * weights, MkaPackBf16, MkaAttention, MkaRmsNorm, MkaRope, MkaSiluMul, MkaGatherRows, and
 * MkaDecoderLayer: a whole decoder layer in one call). Every other op is the cpu backend's own kernel. The kernels compute in place on the
 * tensors' arrays and write into arrays the output tensors then own: nothing is copied.
 */
import { tf } from './tf.ts';
import { flag } from './options.ts';
import { THREADS_OPTION } from './backend-choice.ts';
import { availableParallelism } from 'node:os';
import { bf16PackedWords, describeAddon, loadNativeAddon, F32, Q4, Q8, type ElementType, type NativeAddon, type WeightDesc, type WeightFormat } from './native-addon.ts';
import { matMulKernelFunc, planMatMul } from './native-matmul.ts';
import { KERNELS } from './kernel-names.ts';
import type { BackendProfile } from './profile.ts';
import type { ComputeChoice } from './backend-choice.ts';

/** The tfjs backend name. */
export const NATIVE_BACKEND = 'native';

type Values = Float32Array | Int32Array | Uint8Array;

const size = (dims: readonly number[]) => dims.reduce((p, d) => p * d, 1);

/*
 * The one place that reaches into tfjs's cpu backend: its private per-tensor data (a typed array the
 * kernels read and write in place) and makeTensorInfo (tensors owning arrays the kernels filled).
 */
function values(backend: object, t: tf.TensorInfo): Values {
  const v = (backend as unknown as tf.MathBackendCPU).data.get(t.dataId)?.values;
  if (!v || !ArrayBuffer.isView(v)) throw new Error('native kernels: tensor data is not a typed array on the native backend');
  return v as Values;
}

const output = (backend: object, shape: number[], data: Float32Array | Int32Array, dtype: 'float32' | 'int32' = 'float32') =>
  (backend as unknown as tf.MathBackendCPU).makeTensorInfo(shape, dtype, data);

function float32(backend: object, t: tf.TensorInfo, what: string): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`native kernels: ${what} must be float32, got ${t.dtype}`);
  return values(backend, t) as Float32Array;
}

/** Attributes of a weight as MkaLinear / MkaGatherRows / MkaDecoderLayer take it (ops.ts weightAttrs). */
interface WeightAttrs { format: WeightFormat; rows: number; cols: number; group?: number; perToken?: number; floatProducts?: number }

/**
 * The addon's descriptor of a weight given as tensors (w: values; scales, mins: contract 1's) and
 * attributes, its dtype and size checked against the format.
 */
function weightDesc(backend: object, w: tf.TensorInfo, a: WeightAttrs, what: string, scales?: tf.TensorInfo, mins?: tf.TensorInfo): WeightDesc {
  const want = a.format === F32 ? 'float32' : 'int32';
  if (w.dtype !== want) throw new Error(`${what}: a weight of format ${a.format} comes in a ${want} tensor, got ${w.dtype}`);
  const desc: WeightDesc = { format: a.format, rows: a.rows, cols: a.cols, data: values(backend, w) };
  if (a.format === Q8 || a.format === Q4) {
    if (!scales) throw new Error(`${what}: a packed integer weight needs its scales`);
    desc.scales = float32(backend, scales, `${what} scales`);
    desc.mins = mins ? float32(backend, mins, `${what} mins`) : null;
    desc.group = a.group;
    desc.perToken = !!a.perToken;
    desc.floatProducts = !!a.floatProducts;
  }
  return desc;
}

function linearKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, w, bias, residual, scales, mins } = inputs as Record<string, tf.TensorInfo | undefined>;
    const a = attrs as unknown as WeightAttrs;
    const k = x!.shape[x!.shape.length - 1];
    if (a.cols !== k) throw new Error(`MkaLinear: weight [${a.rows}, ${a.cols}] does not take inputs of width ${k}`);
    const m = size(x!.shape) / k, n = a.rows;
    const outShape = [...x!.shape.slice(0, -1), n];
    const y = residual ? Float32Array.from(float32(backend, residual, 'residual')) : new Float32Array(m * n);
    if (residual && y.length !== m * n) throw new Error(`MkaLinear: residual [${residual.shape}] does not match the output [${outShape}]`);
    if (m > 0 && n > 0) {
      addon.linear({
        x: float32(backend, x!, 'x'), m, weight: weightDesc(backend, w!, a, 'MkaLinear', scales, mins),
        bias: bias ? float32(backend, bias, 'bias') : null, y, accumulate: !!residual,
      });
    }
    return output(backend, outShape, y);
  };
}

/** MkaLinearQ (contract 1): x·Wᵀ for a packed integer weight, its attributes as kernel-names.ts lists them. */
function linearQKernel(addon: NativeAddon): tf.KernelFunc {
  const linear = linearKernel(addon);
  return ({ inputs, backend, attrs }) => {
    const { x, q, scales, mins, bias, residual } = inputs as Record<string, tf.TensorInfo | undefined>;
    const { bits, group, cols, actBits, floatProducts } = attrs as Record<string, number>;
    if (bits !== 8 && bits !== 4) throw new Error(`MkaLinearQ: bits ${bits}`);
    const rowBytes = Math.ceil(cols / 32) * (bits === 8 ? 32 : 16);
    if (q!.shape.length !== 2 || q!.shape[1] * 4 !== rowBytes) throw new Error(`MkaLinearQ: quants [${q!.shape}] for rows of ${cols} ${bits}-bit inputs`);
    const a: WeightAttrs = { format: bits === 8 ? Q8 : Q4, rows: q!.shape[0], cols, group, perToken: actBits === 8 ? 1 : 0, floatProducts: floatProducts ? 1 : 0 };
    const named: Record<string, tf.TensorInfo> = { x: x!, w: q!, scales: scales! };
    if (mins) named.mins = mins;
    if (bias) named.bias = bias;
    if (residual) named.residual = residual;
    return linear({ inputs: named, backend, attrs: a as unknown as tf.NamedAttrMap });
  };
}

/** MkaPackBf16: a weight [rows, cols] (float32, or 16-bit words two per int32 of `type`) as BF16P words. */
function packBf16Kernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { w } = inputs as Record<string, tf.TensorInfo>;
    const { type, rows, cols } = attrs as { type: ElementType; rows: number; cols: number };
    const src = values(backend, w);
    if (src.byteLength !== rows * cols * (type === F32 ? 4 : 2)) throw new Error(`MkaPackBf16: ${src.byteLength} bytes for [${rows}, ${cols}] of type ${type}`);
    const out = new Int32Array(bf16PackedWords(rows, cols));
    addon.packBf16({ src: type === F32 ? src : new Uint16Array(src.buffer, src.byteOffset, rows * cols), type, rows, cols, out });
    return output(backend, [out.length], out, 'int32');
  };
}

function attentionKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { q, k, v } = inputs as Record<string, tf.TensorInfo>;
    const { window, scale, bf16 } = attrs as { window: number; scale: number; bf16?: number };
    const [B, T, nH, hd] = q.shape;
    const [kvB, nKV, S] = k.shape;
    const out = new Float32Array(size(q.shape));
    addon.attention({ q: float32(backend, q, 'q'), k: float32(backend, k, 'k'), v: float32(backend, v, 'v'), out, B, T, S, nH, nKV, hd, kvB, window, scale, bf16: !!bf16 });
    return output(backend, q.shape, out);
  };
}

function rmsNormKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { x, w } = inputs as Record<string, tf.TensorInfo>;
    const n = x.shape[x.shape.length - 1];
    if (size(w.shape) !== n) throw new Error(`MkaRmsNorm: weight [${w.shape}] for rows of ${n}`);
    const out = new Float32Array(size(x.shape));
    addon.rmsnorm({ x: float32(backend, x, 'x'), w: float32(backend, w, 'w'), out, rows: out.length / n, n, eps: (attrs as { eps: number }).eps });
    return output(backend, x.shape, out);
  };
}

function ropeKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { x, cos, sin } = inputs as Record<string, tf.TensorInfo>;
    const [B, T, heads, hd] = x.shape;
    if (cos.shape[0] !== T || cos.shape[1] !== hd) throw new Error(`MkaRope: tables [${cos.shape}] for input [${x.shape}]`);
    const out = Float32Array.from(float32(backend, x, 'x'));
    addon.rope({ x: out, cos: float32(backend, cos, 'cos'), sin: float32(backend, sin, 'sin'), B, T, heads, hd });
    return output(backend, x.shape, out);
  };
}

function siluMulKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend }) => {
    const { gate, up } = inputs as Record<string, tf.TensorInfo>;
    if (size(gate.shape) !== size(up.shape)) throw new Error(`MkaSiluMul: gate [${gate.shape}] and up [${up.shape}] differ`);
    const out = new Float32Array(size(gate.shape));
    addon.siluMul({ gate: float32(backend, gate, 'gate'), up: float32(backend, up, 'up'), out, n: out.length });
    return output(backend, gate.shape, out);
  };
}

function gatherKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const { table, ids, scales, mins } = inputs as Record<string, tf.TensorInfo | undefined> as Record<string, tf.TensorInfo>;
    const a = attrs as unknown as WeightAttrs;
    if (ids.dtype !== 'int32') throw new Error('MkaGatherRows: ids must be int32');
    const idv = values(backend, ids) as Int32Array;
    for (const id of idv) if (id < 0 || id >= a.rows) throw new Error(`MkaGatherRows: id ${id} outside 0..${a.rows - 1}`);
    const out = new Float32Array(idv.length * a.cols);
    addon.gatherRows({ table: weightDesc(backend, table, a, 'MkaGatherRows', scales, mins), ids: idv, out });
    return output(backend, [idv.length, a.cols], out);
  };
}

/** Input names of MkaDecoderLayer's projections, in the addon's order (q, k, v, o, gate, up, down). */
const PROJECTIONS = ['q', 'k', 'v', 'o', 'g', 'u', 'd'] as const;

function decoderLayerKernel(addon: NativeAddon): tf.KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const t = inputs as Record<string, tf.TensorInfo | undefined>;
    const a = attrs as Record<string, number>;
    const { nH, nKV, hd, eps, window, scale, keep, bf16Attention } = a;
    const x = t.x!;
    const [B, T, H] = x.shape;
    const F = a.grows;
    const S0 = t.pastK ? t.pastK.shape[2] : 0, kvB = t.pastK ? t.pastK.shape[0] : 1;
    const weights = PROJECTIONS.map((p) => weightDesc(backend, t[`w${p}`]!, {
      format: a[`${p}format`] as WeightFormat, rows: a[`${p}rows`], cols: a[`${p}cols`], group: a[`${p}group`], perToken: a[`${p}perToken`], floatProducts: a[`${p}floatProducts`],
    }, `MkaDecoderLayer w${p}`, t[`s${p}`], t[`m${p}`]));
    const h = new Float32Array(B * T * H);
    const kv = keep ? B * nKV * (S0 + T) * hd : 0;
    const kOut = keep ? new Float32Array(kv) : null, vOut = keep ? new Float32Array(kv) : null;
    const f32 = (name: string) => (t[name] ? float32(backend, t[name]!, name) : null);
    addon.decoderLayer({
      x: float32(backend, x, 'x'), h, norm1: f32('norm1')!, norm2: f32('norm2')!, weights, biases: PROJECTIONS.map((p) => f32(`b${p}`)),
      pastK: f32('pastK'), pastV: f32('pastV'), cos: f32('cos')!, sin: f32('sin')!, kOut, vOut,
      B, T, H, nH, nKV, hd, F, S0, kvB, window, eps, scale, bf16Attention: !!bf16Attention,
    });
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
  const c = new Float32Array(batch * m * n);
  const bv = bias ? float32(backend, bias, 'bias') : null;
  addon.matmul({ a: float32(backend, a, 'a'), b: float32(backend, b, 'b'), c, m, n, k, transA, transB, batch, idx, bias: bv, biasLength: bv?.length, activation: act });
  return output(backend, [...outDims, m, n], c);
}

/**
 * tfjs's cpu backend, without its first-use console advice to install tfjs-node: here the cpu
 * backend's tensors are the point (RAM-sized, computed by mka's native kernels), and the advice
 * would be a stray line on stderr of every command.
 */
function quietCpuBackend(): tf.MathBackendCPU {
  const backend = new tf.MathBackendCPU();
  (backend as unknown as { firstUse: boolean }).firstUse = false;
  return backend;
}

/**
 * Registers the `native` backend (once per process) and sets the addon's thread count (default: all
 * cores). Does not switch to it. Returns why not when the addon does not load.
 */
export function registerNativeBackend(opts: { threads?: number } = {}):
  { ok: true; reason: string; profile: (compute: ComputeChoice) => BackendProfile } | { ok: false; reason: string } {
  const threads = opts.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) return { ok: false, reason: `${flag(THREADS_OPTION)} ${threads} is not a positive integer` };
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
      [KERNELS.packBf16]: packBf16Kernel(addon),
      [KERNELS.linearQ]: linearQKernel(addon),
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
  return { ok: true, reason: `${describeAddon(addon)}, ${n} thread${n === 1 ? '' : 's'}`, profile: (compute) => nativeProfile(addon, compute) };
}

/** The native backend's profile: RAM tensors, 16-bit weights as stored, every fused kernel, bf16 and integer products. */
export function nativeProfile(addon: NativeAddon, compute: ComputeChoice): BackendProfile {
  const i = addon.info();
  return {
    backend: NATIVE_BACKEND, transposeFromRows: null, transposedProjections: false, takes16Bit: true,
    bf16Products: { kernel: i.bf16Kernel, hardware: !i.bf16Kernel.startsWith('emulated') && i.bf16Kernel !== 'amx-emulated' },
    integerProducts: i.int8Kernel, compute, gradients: false,
    memory: { backend: NATIVE_BACKEND, heapLimit: null, keeps16Bit: true, blockedAttention: true, bf16Matrices: compute === 'bfloat16' },
  };
}
