/**
 * safetensors files: a lazy, validating reader (a tensor's bytes are read only when asked for) and a
 * streaming writer (tensors are produced one at a time, so a file larger than memory can be written).
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * then the data region; offsets are relative to the data region.
 */
import { closeSync, fstatSync, readSync } from 'node:fs';
import { openRegularFile, showJson } from './read.ts';
import { UserError } from '../runtime/errors.ts';
import { atomicWriteFile, writeAll } from './atomic.ts';
import { flag } from '../runtime/options.ts';
import { ALLOW_NONFINITE } from './options.ts';

export type DType = 'F32' | 'F16' | 'BF16';
/** Stored dtypes: the float ones, and the bytes of packed quantized weights (src/io/packed.ts). */
export type StoredDType = DType | 'I8' | 'U8';
const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);
/** Dtypes a tensor may have: floats, and the int8/uint8 quants of packed weights. */
const STORED_DTYPES = new Set([...FLOAT_DTYPES, 'I8', 'U8']);
/** Headers above this size are refused without allocating them (real headers are a few MB at most). */
const MAX_HEADER = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: StoredDType;
  shape: number[];
  /** Absolute byte offsets of the tensor in the file. */
  begin: number;
  end: number;
}

/**
 * The index of the first NaN or ±Infinity among `data`'s values stored as `dtype` (little-endian
 * words: all exponent bits set), or -1 when every value is finite.
 */
export function firstNonFinite(data: Uint8Array, dtype: DType): number {
  if (dtype === 'F32') {
    const f = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4);
    for (let i = 0; i < f.length; i++) if (f[i] - f[i] !== 0) return i;
    return -1;
  }
  const exp = dtype === 'BF16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < data.length; i += 2) if (((data[i] | (data[i + 1] << 8)) & exp) === exp) return i / 2;
  return -1;
}

/** The value at index `i` of `data` stored as `dtype`, for messages (NaN, Infinity or -Infinity). */
function valueAt(data: Uint8Array, dtype: DType, i: number): number {
  const w = dtype === 'F32' ? data.subarray(4 * i, 4 * i + 4) : data.subarray(2 * i, 2 * i + 2);
  return toFloat32(Buffer.from(w), dtype)[0];
}

/**
 * Throws a UserError naming the file and tensor when a tensor holds a NaN or an infinite value (a
 * corrupt or badly converted checkpoint: every result computed from it would be silently wrong).
 */
export function checkFinite(path: string, name: string, data: Uint8Array, dtype: StoredDType): void {
  if (dtype === 'I8' || dtype === 'U8') return; // packed quants: integers, always finite
  const i = firstNonFinite(data, dtype);
  if (i >= 0) {
    throw new UserError(`${path}: tensor "${name}" holds ${valueAt(data, dtype, i)} at index ${i}; the checkpoint is corrupt (re-download or re-convert it), or pass ${flag(ALLOW_NONFINITE)} to use it anyway`);
  }
}

export interface SafetensorsOptions {
  /** Read tensors holding NaN or ±Infinity without refusing them (default: refuse, see checkFinite). */
  allowNonFinite?: boolean;
}

/** An open safetensors file; call `close()` when done. */
export class SafetensorsFile {
  readonly tensors = new Map<string, TensorInfo>();
  readonly metadata: Record<string, string> = {};
  private fd: number;

  constructor(readonly path: string, private readonly opts: SafetensorsOptions = {}) {
    this.fd = openRegularFile(path, 'safetensors weight file');
    try {
      this.parseHeader();
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  private parseHeader(): void {
    const fail = (msg: string): never => {
      throw new UserError(`${this.path}: ${msg}; the file is not a valid safetensors file (re-download or re-convert it)`);
    };
    const size = fstatSync(this.fd).size;
    if (size < 8) fail(`truncated (${size} bytes, no header)`);
    const lenBuf = Buffer.alloc(8);
    readSync(this.fd, lenBuf, 0, 8, 0);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (n > size - 8) fail(`header length ${n} is larger than the file (${size} bytes)`);
    if (n > MAX_HEADER) fail(`header length ${n} exceeds ${MAX_HEADER} bytes`);
    const hdr = Buffer.alloc(n);
    readSync(this.fd, hdr, 0, n, 8);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(hdr));
    } catch {
      return fail('header is not valid UTF-8 JSON');
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('header is not a JSON object');
    const dataStart = 8 + n;
    const dataLen = size - dataStart;
    for (const [name, v] of Object.entries(json)) {
      if (name === '__metadata__') {
        if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.values(v).every((x) => typeof x === 'string')) {
          fail('__metadata__ must be an object of string values');
        }
        Object.assign(this.metadata, v as object);
        continue;
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`entry ${showJson(name, 200)} is ${v === null ? 'null' : Array.isArray(v) ? 'an array' : `a ${typeof v}`}, not a tensor description`);
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof t.dtype !== 'string' || !(t.dtype in BYTES)) fail(`tensor ${showJson(name, 200)} has unknown dtype ${showJson(t.dtype)}`);
      if (!STORED_DTYPES.has(t.dtype as string)) fail(`tensor ${showJson(name, 200)} has dtype ${t.dtype}; only F32, F16 and BF16 weights (and I8/U8 packed quants) are supported`);
      if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`tensor ${showJson(name, 200)} has an invalid shape`);
      const off = t.data_offsets as number[];
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) {
        fail(`tensor ${showJson(name, 200)} has invalid data_offsets`);
      }
      const shape = t.shape as number[];
      const bytes = shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype as string];
      if (off[1] - off[0] !== bytes) fail(`tensor ${showJson(name, 200)} has ${off[1] - off[0]} bytes but its shape [${shape}] needs ${bytes}`);
      if (off[1] > dataLen) fail(`tensor ${showJson(name, 200)} ends at byte ${dataStart + off[1]}, past the end of the file (${size} bytes: truncated?)`);
      this.tensors.set(name, { name, dtype: t.dtype as StoredDType, shape, begin: dataStart + off[0], end: dataStart + off[1] });
    }
    const byStart = [...this.tensors.values()].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
    for (let i = 1; i < byStart.length; i++) {
      const [a, b] = [byStart[i - 1], byStart[i]];
      if (b.begin < a.end) fail(`tensors ${showJson(a.name, 200)} and ${showJson(b.name, 200)} overlap (bytes ${a.begin}-${a.end} and ${b.begin}-${b.end})`);
    }
  }

  /** Reads one tensor and converts it to float32. */
  read(name: string): Float32Array {
    const info = this.tensors.get(name);
    if (!info) throw new UserError(`${this.path}: no tensor named "${name}"`);
    if (!FLOAT_DTYPES.has(info.dtype)) throw new Error(`${this.path}: "${name}" holds ${info.dtype} packed quants, not values; read it through the packed weights (src/model/packed-checkpoint.ts)`);
    const buf = Buffer.alloc(info.end - info.begin);
    const got = readSync(this.fd, buf, 0, buf.length, info.begin);
    if (got !== buf.length) throw new UserError(`${this.path}: short read of "${name}" (truncated file?)`);
    if (!this.opts.allowNonFinite) checkFinite(this.path, name, buf, info.dtype);
    return toFloat32(buf, info.dtype as DType);
  }

  /**
   * Reads one tensor's bytes as stored (little-endian F32, F16 or BF16 words), into a fresh
   * ArrayBuffer of its own, so typed-array views of any element size fit.
   */
  readRaw(name: string): { dtype: StoredDType; data: Uint8Array } {
    const info = this.tensors.get(name);
    if (!info) throw new UserError(`${this.path}: no tensor named "${name}"`);
    const data = new Uint8Array(info.end - info.begin);
    let done = 0;
    while (done < data.length) {
      const got = readSync(this.fd, data, done, data.length - done, info.begin + done);
      if (got === 0) throw new UserError(`${this.path}: short read of "${name}" (truncated file?)`);
      done += got;
    }
    if (!this.opts.allowNonFinite) checkFinite(this.path, name, data, info.dtype);
    return { dtype: info.dtype, data };
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Converts little-endian raw bytes of the given dtype to float32. */
export function toFloat32(buf: Buffer, dtype: DType): Float32Array {
  const n = buf.length / BYTES[dtype];
  if (dtype === 'F32') {
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(buf);
    return out;
  }
  const out = new Float32Array(n);
  const u32 = new Uint32Array(out.buffer);
  for (let i = 0; i < n; i++) {
    const h = buf[2 * i] | (buf[2 * i + 1] << 8);
    u32[i] = dtype === 'BF16' ? h << 16 : halfToFloatBits(h);
  }
  return out;
}

function halfToFloatBits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0) {
    if (mant === 0) return sign >>> 0;
    let e = -1;
    do {
      e++;
      mant <<= 1;
    } while ((mant & 0x400) === 0);
    return (sign | ((127 - 15 - e) << 23) | ((mant & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  return (sign | ((exp + 127 - 15) << 23) | (mant << 13)) >>> 0;
}

/** Rounds float32 values to the given storage dtype (round to nearest even), as little-endian bytes. */
export function fromFloat32(data: Float32Array, dtype: DType, overflow?: Overflow): Buffer {
  if (dtype === 'F32') return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const u32 = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = Buffer.alloc(data.length * 2);
  const inf = dtype === 'BF16' ? 0x7f80 : 0x7c00;
  for (let i = 0; i < data.length; i++) {
    const h = dtype === 'BF16' ? floatBitsToBf16(u32[i]) : floatBitsToHalf(u32[i]);
    if ((h & 0x7fff) === inf && overflow && Number.isFinite(data[i])) overflow(i, data[i]);
    out[2 * i] = h & 0xff;
    out[2 * i + 1] = h >> 8;
  }
  return out;
}

/**
 * Told of the first finite value a 16-bit dtype cannot hold (index, value), which would round to ±Infinity:
 * throws, naming the tensor and the fix. Weights that large are a corrupt checkpoint (a flipped exponent bit).
 */
export type Overflow = (index: number, value: number) => never;

/** The largest magnitude of a 16-bit float dtype, for messages. */
export const DTYPE_MAX: Record<'F16' | 'BF16', string> = { F16: '65504', BF16: '3.39e38' };

function floatBitsToBf16(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

function floatBitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  /** Storage dtype; data is given as float32 and rounded on write (float dtypes), or as bytes already in this dtype. */
  dtype: StoredDType;
}

/**
 * Writes a safetensors file, asking `produce` for each tensor's data in order (float32 values, or a
 * Uint8Array of little-endian bytes already in the storage dtype, written as is), so only one tensor
 * is in memory at a time. Written to a temporary path and renamed when complete. `overflow(name)` is told
 * of a float value the tensor's 16-bit dtype cannot hold (it throws, and nothing is left).
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorToWrite[],
  produce: (name: string) => Float32Array | Uint8Array | Promise<Float32Array | Uint8Array>,
  metadata: Record<string, string> = { format: 'pt' },
  overflow?: (name: string) => Overflow,
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let hdr = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (hdr.length % 8)) % 8; // keep the data region 8-byte aligned
  if (pad) hdr = Buffer.concat([hdr, Buffer.alloc(pad, 0x20)]);
  await atomicWriteFile(path, async (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hdr.length));
    writeAll(fd, len);
    writeAll(fd, hdr);
    for (const t of tensors) {
      const data = await produce(t.name);
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (data instanceof Uint8Array) {
        if (data.length !== numel * BYTES[t.dtype]) throw new Error(`writeSafetensors: "${t.name}" has ${data.length} bytes, shape [${t.shape}] in ${t.dtype} needs ${numel * BYTES[t.dtype]}`);
        writeAll(fd, data);
        continue;
      }
      if (data.length !== numel) throw new Error(`writeSafetensors: "${t.name}" has ${data.length} values, shape [${t.shape}] needs ${numel}`);
      if (!FLOAT_DTYPES.has(t.dtype)) throw new Error(`writeSafetensors: "${t.name}" is ${t.dtype}: give its bytes, not float values`);
      writeAll(fd, fromFloat32(data, t.dtype as DType, overflow?.(t.name)));
    }
  });
}
