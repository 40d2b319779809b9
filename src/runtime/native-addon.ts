/**
 * Loads mka's own native kernels (native/*.c, built by scripts/build-native.mjs at install into
 * native/build/Release/mka_native.node): a packed float32 matrix product with AVX-512, AVX2/FMA and
 * portable paths chosen from the CPU's flags at load, causal GQA attention, RMSNorm, RoPE, SiLU·up,
 * embedding gathers and 16-bit widening, all on the addon's own thread pool. The API is the
 * contract below; every operand is (view, byteOffset) and is bounds-checked by the addon.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Element types of B / weights: float32, bfloat16, IEEE float16 (16-bit values as raw words). */
export const F32 = 0, BF16 = 1, F16 = 2;
export type ElementType = typeof F32 | typeof BF16 | typeof F16;

/** What the compiled addon exports (native/addon.c). */
export interface NativeAddon {
  info(): { isa: 'avx512' | 'avx2' | 'generic'; threads: number; procs: number; bf16Dot: boolean; amx: boolean; cpu: string };
  /** 1..procs*4; throws otherwise. */
  setThreads(n: number): void;
  /**
   * C[batch][m][n] = act(op(A)·op(B) + bias) (C += that when accumulate). A [batchA, m, k]
   * ([batchA, k, m] if transA), B [batchB, k, n] ([batchB, n, k] if transB: HF [out, in] weights)
   * of bType; idx: null or 2*batch (A index, B index) pairs; bias: null or 1 or n floats;
   * act 0 linear, 1 relu, 2 relu6.
   */
  matmul(
    A: ArrayBufferView, aOff: number, B: ArrayBufferView, bOff: number, bType: ElementType,
    C: ArrayBufferView, cOff: number, m: number, n: number, k: number, transA: boolean, transB: boolean,
    batch: number, idx: Int32Array | null, bias: ArrayBufferView | null, biasOff: number, biasLen: number,
    act: number, accumulate: boolean,
  ): void;
  /**
   * Causal GQA attention: q, out [B, T, nH, hd]; k, v [kvB, nKV, S, hd] (kvB = B or 1). Query t sits
   * at position S - T + t and sees keys s <= that (and s > that - window when window > 0).
   */
  attention(
    q: ArrayBufferView, qOff: number, k: ArrayBufferView, kOff: number, v: ArrayBufferView, vOff: number,
    out: ArrayBufferView, outOff: number, B: number, T: number, S: number, nH: number, nKV: number, hd: number,
    kvB: number, window: number, scale: number,
  ): void;
  /** out[r] = x[r] / sqrt(mean(x[r]²) + eps) * w. */
  rmsnorm(
    x: ArrayBufferView, xOff: number, w: ArrayBufferView, wOff: number, wType: ElementType,
    out: ArrayBufferView, outOff: number, rows: number, n: number, eps: number,
  ): void;
  /** In place rotate-half RoPE on x [B, T, heads, hd] with cos, sin [T, hd]. */
  rope(
    x: ArrayBufferView, xOff: number, cos: ArrayBufferView, cosOff: number, sin: ArrayBufferView, sinOff: number,
    B: number, T: number, heads: number, hd: number,
  ): void;
  /** out = silu(gate) * up. */
  siluMul(gate: ArrayBufferView, gOff: number, up: ArrayBufferView, uOff: number, out: ArrayBufferView, outOff: number, n: number): void;
  /** out[r] = float32(table[ids[r]]), table [vocab, n] of tType. */
  gatherRows(
    table: ArrayBufferView, tOff: number, tType: ElementType, vocab: number, n: number, ids: Int32Array,
    out: ArrayBufferView, outOff: number,
  ): void;
  /**
   * One decoder layer (native/layer.c): views = [x, h, norm1, norm2, wq, wk, wv, wo, wg, wu, wd, bq, bk, bv,
   * bo, bg, bu, bd, pastK, pastV, cos, sin, kOut, vOut] (null where absent; all at byte offset 0), dims =
   * [B, T, H, nH, nKV, hd, F, S0, kvB, wType, window, eps, scale]. x, h [B*T, H]; weights HF [out, in] of
   * wType; norms, biases float32; pastK/V [kvB, nKV, S0, hd]; cos, sin [T, hd]; kOut/vOut (optional)
   * [B, nKV, S0+T, hd] receive the extended keys/values.
   */
  decoderLayer(views: (ArrayBufferView | null)[], dims: number[]): void;
  /** n values of srcType widened to float32. */
  toFloat32(src: ArrayBufferView, sOff: number, srcType: ElementType, out: ArrayBufferView, outOff: number, n: number): void;
}

/** The addon's default location; MKA_NATIVE_ADDON overrides it (tests point it at a missing file). */
export const DEFAULT_ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/mka_native.node', import.meta.url));

/** One line naming the kernels: `mka_native avx512 on AMD EPYC`. */
export function describeAddon(addon: NativeAddon): string {
  const i = addon.info();
  return `mka_native ${i.isa} on ${i.cpu}`;
}

/**
 * Loads the addon (MKA_NATIVE_ADDON or the default path; MKA_ISA=generic|avx2|avx512 forces a lower
 * path and is read once, when the addon is first loaded in the process). Returns why not when it
 * cannot.
 */
export function loadNativeAddon(): { addon: NativeAddon; reason: string } | { addon: null; reason: string } {
  const path = process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH;
  if (!existsSync(path)) {
    return { addon: null, reason: `native addon not built (${path} missing; needs a C compiler at npm ci, or npm run build:native)` };
  }
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    return { addon, reason: describeAddon(addon) };
  } catch (e) {
    return { addon: null, reason: `native addon failed to load (${e instanceof Error ? e.message.split('\n')[0] : String(e)})` };
  }
}
