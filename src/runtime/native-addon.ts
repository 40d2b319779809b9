/**
 * Loads mka's own native kernels (native/*.c, built by scripts/build-native.mjs at install into
 * native/build/Release/mka_native.node): a packed float32 matrix product with AVX-512, AVX2/FMA and
 * portable paths chosen from the CPU's flags at load, causal GQA attention, RMSNorm, RoPE, SiLU·up,
 * embedding gathers and 16-bit widening, all on the addon's own thread pool. The API is the
 * contract below; every operand is (view, byteOffset) and is bounds-checked by the addon.
 */
import { createRequire } from 'node:module';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Element types of B / weights: float32, bfloat16, IEEE float16 (16-bit values as raw words). */
export const F32 = 0, BF16 = 1, F16 = 2;
export type ElementType = typeof F32 | typeof BF16 | typeof F16;
/**
 * Weight formats: the element types above in Hugging Face layout [rows, cols], BF16P (bf16 packed
 * into panels for the bf16 products, see packBf16), and contract 1's packed integer weights Q8, Q4.
 */
export const BF16P = 3, Q8 = 4, Q4 = 5;
export type WeightFormat = ElementType | typeof BF16P | typeof Q8 | typeof Q4;

/** An operand: a typed array (or DataView) from its start, or from a byte offset into it (`<name>Offset`). */
type View = ArrayBufferView;
/** A descriptor whose operands may each come with a byte offset, `<name>Offset` (the wasm heap's tensors). */
type WithOffsets<T> = T & { [K in keyof T as T[K] extends View | null | undefined ? `${string & K}Offset` : never]?: number };

/**
 * A weight W [rows = outputs, cols = inputs] as the kernels take it. F32/BF16/F16: `data` holds the
 * rows·cols values (16-bit ones as raw words). BF16P: `data` holds bf16PackedWords(rows, cols) words
 * written by packBf16. Q8/Q4 (contract 1): `data` holds the quants row by row in blocks of 32 inputs
 * (Q8: int8, or uint8 when `mins` is given; Q4: 16 bytes per block in ggml's Q4_0 nibble order,
 * unsigned, meaning scale·(q − 8) without mins), `scales` (and `mins`) float32 [rows, cols/group];
 * activations are quantized to int8 per block of 32 inputs, or per token (`perToken`, W8A8), or with
 * `floatProducts` not at all: the rows are widened to float32 and multiplied in float32.
 */
export interface WeightDesc {
  format: WeightFormat;
  rows: number;
  cols: number;
  data: View;
  dataOffset?: number;
  scales?: Float32Array;
  mins?: Float32Array | null;
  group?: number;
  perToken?: boolean;
  floatProducts?: boolean;
}

/** Words of a BF16P weight [rows, cols]: panels of 32 rows by cols rounded up to 32, in pairs. */
export function bf16PackedWords(rows: number, cols: number): number {
  return Math.ceil(rows / 32) * Math.ceil(cols / 32) * 16 * 32;
}

/** W [rows, cols] as float32 from its BF16P words (the layout's definition in JS: packBf16's inverse). */
export function unpackBf16Panels(words: Int32Array | Uint32Array, rows: number, cols: number): Float32Array {
  const pairs = Math.ceil(cols / 32) * 16;
  if (words.length !== bf16PackedWords(rows, cols)) throw new Error(`unpackBf16Panels: ${words.length} words for [${rows}, ${cols}]`);
  const out = new Float32Array(rows * cols), bits = new Uint32Array(out.buffer);
  for (let j = 0; j < rows; j++) {
    const col = Math.floor(j / 32) * pairs * 32 + (j % 32);
    for (let p = 0; 2 * p < cols; p++) {
      const w = words[col + p * 32];
      bits[j * cols + 2 * p] = (w & 0xffff) << 16;
      if (2 * p + 1 < cols) bits[j * cols + 2 * p + 1] = w & 0xffff0000;
    }
  }
  return out;
}

/** What the compiled addon exports (native/addon.c): each kernel takes one descriptor object. */
export interface NativeAddon {
  info(): {
    /** float32 path in use */
    isa: 'avx512' | 'avx2' | 'generic';
    /** MKA_ISA's cap (default amx: everything the CPU has) */
    level: 'generic' | 'avx2' | 'avx512' | 'vnni' | 'bf16' | 'amx';
    /** the kernel of bf16 products: amx, avx512bf16, amx-emulated (MKA_ISA=amx-emulated) or emulated-<isa> (float32 FMAs) */
    bf16Kernel: string;
    /** the kernel of integer products: vnni, avx512bw, avx2 or generic */
    int8Kernel: string;
    /** why AMX is unused although the CPU has it, or '' */
    amxNote: string;
    cpuHas: { avx2: boolean; avx512: boolean; vnni: boolean; bf16: boolean; amx: boolean };
    threads: number;
    procs: number;
    cpu: string;
  };
  /** 1..procs*4; throws otherwise. */
  setThreads(n: number): void;
  /**
   * C[batch][m][n] = act(op(A)·op(B) + bias) (C += that when accumulate). A [batchA, m, k]
   * ([batchA, k, m] if transA), B [batchB, k, n] ([batchB, n, k] if transB: HF [out, in] weights)
   * of bType (default F32); idx: the (A index, B index) pair of each batch item, or absent;
   * bias: 1 or n floats (biasLength, default n); activation 0 linear (default), 1 relu, 2 relu6.
   */
  matmul(d: {
    a: View; aOffset?: number; b: View; bOffset?: number; bType?: ElementType; c: View; cOffset?: number;
    m: number; n: number; k: number; transA?: boolean; transB?: boolean; batch?: number; idx?: Int32Array | null;
    bias?: View | null; biasOffset?: number; biasLength?: number; activation?: number; accumulate?: boolean;
  }): void;
  /** y [m, rows] = x [m, cols]·Wᵀ + bias (y += that when accumulate), for a weight in any format. */
  linear(d: WithOffsets<{ x: View; m: number; weight: WeightDesc; bias?: View | null; y: View; accumulate?: boolean }>): void;
  /** Packs W [rows, cols] of `type` into BF16P (out: bf16PackedWords(rows, cols) words); float32/float16 round to nearest even. */
  packBf16(d: WithOffsets<{ src: View; type: ElementType; rows: number; cols: number; out: Uint32Array | Int32Array }>): void;
  /**
   * Causal GQA attention: q, out [B, T, nH, hd]; k, v [kvB, nKV, S, hd] (kvB = B or 1, default 1). Query t
   * sits at position S - T + t and sees keys s <= that (and s > that - window when window > 0). bf16: the
   * scores and P·V as bf16 products (more than 2 query rows; the softmax stays float32).
   */
  attention(d: WithOffsets<{
    q: View; k: View; v: View; out: View; B: number; T: number; S: number; nH: number; nKV: number; hd: number;
    kvB?: number; window?: number; scale: number; bf16?: boolean;
  }>): void;
  /** out[r] = x[r] / sqrt(mean(x[r]²) + eps) * w (w of wType, default F32). */
  rmsnorm(d: WithOffsets<{ x: View; w: View; wType?: ElementType; out: View; rows: number; n: number; eps: number }>): void;
  /** In place rotate-half RoPE on x [B, T, heads, hd] with cos, sin [T, hd]. */
  rope(d: WithOffsets<{ x: View; cos: View; sin: View; B: number; T: number; heads: number; hd: number }>): void;
  /** out = silu(gate) * up. */
  siluMul(d: WithOffsets<{ gate: View; up: View; out: View; n: number }>): void;
  /** out[r] = float32(row ids[r] of table), a weight [vocab, n] of format F32, BF16, F16 or BF16P. */
  gatherRows(d: WithOffsets<{ table: WeightDesc; ids: Int32Array; out: View }>): void;
  /**
   * One decoder layer (native/layer.c). x, h [B*T, H]; weights q, k, v, o, gate, up, down as HF [out, in]
   * weight descriptors (any format); biases: 7 float32 views or nulls; norms float32; pastK/V [kvB, nKV, S0, hd];
   * cos, sin [T, hd]; kOut/vOut (optional) [B, nKV, S0+T, hd] receive the extended keys/values.
   */
  decoderLayer(d: WithOffsets<{
    x: View; h: View; norm1: View; norm2: View; weights: WeightDesc[]; biases?: (View | null)[];
    pastK?: View | null; pastV?: View | null; cos: View; sin: View; kOut?: View | null; vOut?: View | null;
    B: number; T: number; H: number; nH: number; nKV: number; hd: number; F: number; S0?: number; kvB?: number;
    window?: number; eps: number; scale: number; bf16Attention?: boolean;
  }>): void;
  /** n values of type widened to float32. */
  toFloat32(d: WithOffsets<{ src: View; type: ElementType; out: View; n: number }>): void;
  /**
   * Bench-only: GFLOP/s of a register-only loop on every thread (kind 0 float32 FMA, 1 vdpbf16ps, 2 vpdpbusd
   * in GOP/s), wall and per CPU-second of the loops; 0 when absent.
   */
  _peak(kind: 0 | 1 | 2, seconds: number): { wall: number; perCpuSecond: number };
}

/** The addon's default location; MKA_NATIVE_ADDON overrides it (tests point it at a missing file). */
export const DEFAULT_ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/mka_native.node', import.meta.url));

/** The C sources the default addon is built from (native/). */
const NATIVE_SOURCES = join(dirname(DEFAULT_ADDON_PATH), '..', '..');

/**
 * The first source in `sourcesDir` (*.c, *.h, binding.gyp) modified after the addon at `addonPath` was
 * built, or null: an addon built from older sources (a checkout updated without npm run build:native)
 * may export other functions or take other descriptors, so it is not loaded.
 */
export function newerSource(addonPath: string, sourcesDir: string): string | null {
  if (!existsSync(sourcesDir)) return null;
  const built = statSync(addonPath).mtimeMs;
  return readdirSync(sourcesDir).filter((f) => /\.(c|h)$|^binding\.gyp$/.test(f)).sort()
    .find((f) => statSync(join(sourcesDir, f)).mtimeMs > built) ?? null;
}

/**
 * One line naming the kernels, and why a slower one runs: `mka_native avx512 (bf16 products: avx512bf16,
 * int8: vnni) on AMD EPYC`.
 */
export function describeAddon(addon: NativeAddon): string {
  const i = addon.info();
  const capped = i.level !== 'amx' ? `; MKA_ISA=${i.level}` : '';
  const products = i.int8Kernel === 'avx2' ? 'vpmaddubsw' : '16-bit products';
  const int8 = i.int8Kernel === 'vnni' ? 'vnni' : `${i.int8Kernel}, ${products}: ${i.cpuHas.vnni ? 'VNNI capped' : 'no VNNI'}`;
  const amx = i.cpuHas.amx && i.amxNote ? `; AMX unused: ${i.amxNote}` : '';
  return `mka_native ${i.isa} (bf16 products: ${i.bf16Kernel}, int8: ${int8}${capped}${amx}) on ${i.cpu}`;
}

/**
 * Loads the addon (MKA_NATIVE_ADDON or the default path). MKA_ISA=generic|avx2|avx512|vnni|bf16|amx caps
 * the instruction sets the kernels use (each level includes those below it that the CPU has) and
 * MKA_ISA=amx-emulated runs the AMX kernels on emulated tiles (tests); it is read once, when the
 * addon is first loaded in the process. Returns why not when it cannot.
 */
export function loadNativeAddon(): { addon: NativeAddon; reason: string } | { addon: null; reason: string } {
  const path = process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH;
  if (!existsSync(path)) {
    return { addon: null, reason: `native addon not built (${path} missing; needs a C compiler at npm ci, or npm run build:native)` };
  }
  const newer = process.env.MKA_NATIVE_ADDON ? null : newerSource(path, NATIVE_SOURCES);
  if (newer) return { addon: null, reason: `native addon older than native/${newer} (rebuild it: npm run build:native)` };
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    return { addon, reason: describeAddon(addon) };
  } catch (e) {
    return { addon: null, reason: `native addon failed to load (${e instanceof Error ? e.message.split('\n')[0] : String(e)})` };
  }
}
