/**
 * The packed quantized weight format (docs/quantization.md, Format): a weight W [rows, cols] (Hugging Face
 * [out, in]) stored row by row in blocks of 32 inputs, 8-bit (32 bytes a block: int8 when symmetric,
 * uint8 when not) or 4-bit (16 bytes a block in ggml's Q4_0 nibble order: byte j holds input j of the
 * block in its low nibble and input j+16 in its high one), with one scale (and, asymmetric, one min)
 * per group of 32, 64 or 128 inputs or per row. Dequantized values:
 *  - symmetric 8-bit: scale · q, q in −127..127 (ggml Q8_0: scale = max|w| / 127);
 *  - symmetric 4-bit: scale · (q − 8), q in 0..15 (ggml Q4_0: scale = m / −8, m the value of largest
 *    magnitude, so m itself is exact and a scale may be negative);
 *  - asymmetric: scale · q + min, q in 0..2^bits − 1 (ggml Q4_1's d·q + m).
 * Scales and mins are rounded to float16 before the group is quantized with them, so what is stored
 * (F16 on disk) is exactly what was used; rounding is half away from zero (ggml's roundf). A row whose
 * width is not a multiple of 32 ends in a partial block whose unused bytes are zero; groups are
 * ceil(cols / group), the last one partial. Pure arithmetic on typed arrays: no tfjs.
 */
import { UserError } from '../runtime/errors.ts';

/** Inputs per block. */
export const BLOCK = 32;

export type QuantBits = 4 | 8;

/** How a matrix is quantized. `group` is the inputs per group: 32, 64, 128, or the row width (per output channel). */
export interface PackedSpec {
  bits: QuantBits;
  group: number;
  symmetric: boolean;
}

/** A packed matrix: `quants` rows × rowBytes, scales (and mins) rows × groups. */
export interface PackedMatrix {
  rows: number;
  cols: number;
  spec: PackedSpec;
  quants: Uint8Array;
  scales: Float32Array;
  mins: Float32Array | null;
}

/** Where a checkpoint's packed weight `X.weight` keeps its parts (`X.qweight`, `X.scales`, `X.mins`) and how it is packed. */
export interface PackedInfo {
  spec: PackedSpec;
  rows: number;
  cols: number;
  quants: string;
  scales: string;
  mins: string | null;
}

/** Group sizes other than the row width. */
export const GROUP_SIZES = [32, 64, 128] as const;

/** Bytes of one packed row of `cols` inputs. */
export function rowBytes(cols: number, bits: QuantBits): number {
  return Math.ceil(cols / BLOCK) * (bits === 8 ? BLOCK : BLOCK / 2);
}

/** Groups per row. */
export function groupCount(cols: number, group: number): number {
  return Math.ceil(cols / group);
}

/** The largest quant code (asymmetric) or magnitude bound. */
export function maxCode(bits: QuantBits): number {
  return bits === 8 ? 255 : 15;
}

/** Throws unless `spec` is a valid packing of rows `cols` wide. */
export function checkSpec(spec: PackedSpec, cols: number, what = 'weight'): void {
  if (spec.bits !== 4 && spec.bits !== 8) throw new UserError(`${what}: ${spec.bits}-bit packing is not supported (4 or 8)`);
  if (!(GROUP_SIZES as readonly number[]).includes(spec.group) && spec.group !== cols) {
    throw new UserError(`${what}: group size ${spec.group} must be 32, 64, 128 or the row width ${cols}`);
  }
}

/** x rounded to the nearest float16 value (ties to even), as a number; ±Infinity past float16's range. */
export function roundToHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return x > 0 ? Infinity : -Infinity; // 65504 + half an ulp rounds to infinity
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 rounding near powers of two
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10); // subnormals below 2^-14 share the ulp 2^-24
  const m = a / ulp; // exact: a power-of-two scaling
  let r = Math.floor(m);
  const frac = m - r;
  if (frac > 0.5 || (frac === 0.5 && r % 2 === 1)) r++;
  return Math.sign(x) * r * ulp;
}

/** Rounds half away from zero, as C's roundf (ggml's quantizers). */
export function roundAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** A group's scale and min (min is 0 when symmetric). */
export interface GroupParams {
  scale: number;
  min: number;
}

/**
 * The scale (and min) of the values w[start..end) under `spec`, float16-exact: the round-to-nearest
 * grid of ggml's Q8_0/Q4_0 (symmetric) and Q4_1 (asymmetric, min = the smallest value).
 */
export function groupParams(w: ArrayLike<number>, start: number, end: number, spec: PackedSpec): GroupParams {
  if (spec.symmetric) {
    let m = 0;
    for (let i = start; i < end; i++) if (Math.abs(w[i]) > Math.abs(m)) m = w[i];
    const scale = spec.bits === 8 ? roundToHalf(Math.abs(m) / 127) : roundToHalf(m / -8);
    return { scale: checkFinite(scale), min: 0 };
  }
  let lo = Infinity, hi = -Infinity;
  for (let i = start; i < end; i++) {
    if (w[i] < lo) lo = w[i];
    if (w[i] > hi) hi = w[i];
  }
  if (end <= start) lo = hi = 0;
  return { scale: checkFinite(roundToHalf((hi - lo) / maxCode(spec.bits))), min: checkFinite(roundToHalf(lo)) };
}

/** A group whose scale or min is beyond float16's range (callers name the tensor: groupScaleError). */
export class GroupRangeError extends UserError {}

function checkFinite(v: number): number {
  if (!Number.isFinite(v)) throw new GroupRangeError(`a weight group's scale ${v} is outside float16's range (|w| up to 65504·127); quantize a model with finite, float16-range weights`);
  return v;
}

/**
 * Where w [rows, cols] (row-major) holds a group whose scale or min under `spec` is beyond float16's
 * range, which groupParams refuses: the group's largest value and its row and column; null when none.
 */
export function groupOutOfRange(w: ArrayLike<number>, rows: number, cols: number, spec: PackedSpec): { row: number; col: number; value: number } | null {
  const groups = groupCount(cols, spec.group);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const c0 = r * cols + g * spec.group, c1 = r * cols + Math.min(cols, (g + 1) * spec.group);
      try {
        groupParams(w, c0, c1, spec);
      } catch (e) {
        if (!(e instanceof GroupRangeError)) throw e;
        let at = c0;
        for (let i = c0; i < c1; i++) if (!(Math.abs(w[i]) <= Math.abs(w[at]))) at = i;
        return { row: r, col: at - r * cols, value: w[at] };
      }
    }
  }
  return null;
}

/** The stored code of value w (8-bit symmetric: the int8 value; otherwise 0..maxCode). */
export function quantCode(w: number, p: GroupParams, spec: PackedSpec): number {
  if (spec.symmetric) {
    if (spec.bits === 8) return p.scale === 0 ? 0 : Math.max(-127, Math.min(127, roundAway(w / p.scale)));
    return p.scale === 0 ? 8 : Math.max(0, Math.min(15, roundAway(w / p.scale) + 8));
  }
  return p.scale === 0 ? 0 : Math.max(0, Math.min(maxCode(spec.bits), roundAway((w - p.min) / p.scale)));
}

/** The value a code stands for. */
export function codeValue(q: number, p: GroupParams, spec: PackedSpec): number {
  if (spec.symmetric) return spec.bits === 8 ? p.scale * q : p.scale * (q - 8);
  return p.scale * q + p.min;
}

/** An empty packed matrix (all codes zero) to fill with setCode. */
export function allocPacked(rows: number, cols: number, spec: PackedSpec): PackedMatrix {
  checkSpec(spec, cols);
  const groups = groupCount(cols, spec.group);
  return {
    rows, cols, spec,
    quants: new Uint8Array(rows * rowBytes(cols, spec.bits)),
    scales: new Float32Array(rows * groups),
    mins: spec.symmetric ? null : new Float32Array(rows * groups),
  };
}

/** Stores code q of element (r, c). */
export function setCode(pm: PackedMatrix, r: number, c: number, q: number): void {
  const base = r * rowBytes(pm.cols, pm.spec.bits);
  if (pm.spec.bits === 8) {
    pm.quants[base + c] = q & 0xff;
    return;
  }
  const b = c >> 5, j = c & 31;
  const at = base + b * 16 + (j & 15);
  pm.quants[at] = j < 16 ? (pm.quants[at] & 0xf0) | q : (pm.quants[at] & 0x0f) | (q << 4);
}

/** The code of element (r, c) (8-bit symmetric: signed). */
export function getCode(pm: PackedMatrix, r: number, c: number): number {
  const base = r * rowBytes(pm.cols, pm.spec.bits);
  if (pm.spec.bits === 8) {
    const v = pm.quants[base + c];
    return pm.spec.symmetric && v > 127 ? v - 256 : v;
  }
  const v = pm.quants[base + (c >> 5) * 16 + (c & 15)];
  return (c & 31) < 16 ? v & 15 : v >> 4;
}

/** Stores the parameters of group g of row r. */
export function setGroup(pm: PackedMatrix, r: number, g: number, p: GroupParams): void {
  const i = r * groupCount(pm.cols, pm.spec.group) + g;
  pm.scales[i] = p.scale;
  if (pm.mins) pm.mins[i] = p.min;
}

/** The parameters of group g of row r. */
export function getGroup(pm: PackedMatrix, r: number, g: number): GroupParams {
  const i = r * groupCount(pm.cols, pm.spec.group) + g;
  return { scale: pm.scales[i], min: pm.mins ? pm.mins[i] : 0 };
}

/**
 * Round to nearest: each group's scale from its own values, every value to its nearest code.
 * w is [rows, cols] row-major.
 */
export function quantizeRtn(w: ArrayLike<number>, rows: number, cols: number, spec: PackedSpec): PackedMatrix {
  const pm = allocPacked(rows, cols, spec);
  const groups = groupCount(cols, spec.group);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let g = 0; g < groups; g++) {
      const c0 = g * spec.group, c1 = Math.min(cols, c0 + spec.group);
      const p = groupParams(w, row + c0, row + c1, spec);
      setGroup(pm, r, g, p);
      for (let c = c0; c < c1; c++) setCode(pm, r, c, quantCode(w[row + c], p, spec));
    }
  }
  return pm;
}

/**
 * Rows r0..r1-1 dequantized into out [(r1-r0), cols] (float32, row-major). Reads the packed bytes,
 * scales and mins as held in memory or on disk; a few rows at a time is how the fallback kernels use it.
 */
export function dequantizeRows(
  quants: Uint8Array, scales: ArrayLike<number>, mins: ArrayLike<number> | null, cols: number, spec: PackedSpec,
  r0: number, r1: number, out: Float32Array,
): Float32Array {
  const rb = rowBytes(cols, spec.bits), groups = groupCount(cols, spec.group), g = spec.group;
  for (let r = r0; r < r1; r++) {
    const base = r * rb, o = (r - r0) * cols, s0 = r * groups;
    for (let c0 = 0; c0 < cols; c0 += BLOCK) {
      const gi = s0 + Math.floor(c0 / g);
      const scale = scales[gi], min = mins ? mins[gi] : 0;
      const n = Math.min(BLOCK, cols - c0);
      if (spec.bits === 8) {
        const at = base + c0;
        if (spec.symmetric) for (let j = 0; j < n; j++) out[o + c0 + j] = scale * ((quants[at + j] << 24) >> 24);
        else for (let j = 0; j < n; j++) out[o + c0 + j] = scale * quants[at + j] + min;
      } else {
        const at = base + (c0 >> 1);
        const off = spec.symmetric ? -8 : 0;
        for (let j = 0; j < Math.min(n, 16); j++) out[o + c0 + j] = scale * ((quants[at + j] & 15) + off) + min;
        for (let j = 16; j < n; j++) out[o + c0 + j] = scale * ((quants[at + j - 16] >> 4) + off) + min;
      }
    }
  }
  return out;
}

/** The whole matrix dequantized (tests and small models only; the model code works a block of rows at a time). */
export function dequantize(pm: PackedMatrix): Float32Array {
  return dequantizeRows(pm.quants, pm.scales, pm.mins, pm.cols, pm.spec, 0, pm.rows, new Float32Array(pm.rows * pm.cols));
}

/**
 * The spec of a packed tensor stored as quants [rows, qbytes] (signed int8 or not), scales [rows, groups]
 * and, when asymmetric, mins: bits from the row bytes, group from the scales' columns. Throws naming
 * `what` when the shapes fit no packing of `cols` inputs.
 */
export function specFromShapes(what: string, rows: number, cols: number, quantShape: number[], signed: boolean, scaleShape: number[], hasMins: boolean): PackedSpec {
  const bad = (msg: string): never => {
    throw new UserError(`${what}: ${msg}; the packed tensors do not match config.json (re-quantize the model)`);
  };
  if (quantShape.length !== 2 || quantShape[0] !== rows) bad(`quants have shape [${quantShape}], expected [${rows}, bytes]`);
  const bits: QuantBits | null = quantShape[1] === rowBytes(cols, 8) ? 8 : quantShape[1] === rowBytes(cols, 4) ? 4 : null;
  if (!bits) return bad(`quant rows of ${quantShape[1]} bytes fit neither 8-bit (${rowBytes(cols, 8)}) nor 4-bit (${rowBytes(cols, 4)}) packing of ${cols} inputs`);
  const symmetric = !hasMins;
  if (signed !== (bits === 8 && symmetric)) bad(signed ? 'int8 quants must be 8-bit symmetric' : '8-bit symmetric quants must be stored as I8');
  if (scaleShape.length !== 2 || scaleShape[0] !== rows) bad(`scales have shape [${scaleShape}], expected [${rows}, groups]`);
  const group = scaleShape[1] === 1 ? cols : GROUP_SIZES.find((g) => groupCount(cols, g) === scaleShape[1]);
  if (group === undefined) return bad(`${scaleShape[1]} scale groups per row fit no group size (32, 64, 128 or ${cols}) of ${cols} inputs`);
  return { bits, group, symmetric };
}

/** Bytes a packed matrix holds in memory (quants, float32 scales and mins). */
export function packedBytes(rows: number, cols: number, spec: PackedSpec): number {
  return rows * (rowBytes(cols, spec.bits) + groupCount(cols, spec.group) * 4 * (spec.symmetric ? 1 : 2));
}

/** Bytes a packed matrix takes on disk (quants, float16 scales and mins). */
export function packedDiskBytes(rows: number, cols: number, spec: PackedSpec): number {
  return rows * (rowBytes(cols, spec.bits) + groupCount(cols, spec.group) * 2 * (spec.symmetric ? 1 : 2));
}
