/**
 * A validating GGUF reader: the header (metadata and tensor descriptions) is parsed with buffered
 * positioned reads, and a tensor's bytes are read only when asked for (no mmap). Every count, length
 * and offset is checked against the file's size before anything is allocated, so a truncated,
 * corrupted or hostile file fails with one UserError naming the file and the problem, never with a
 * crash, a huge allocation or a hang.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { UserError } from '../runtime/errors.ts';
import { showJson } from '../io/read.ts';
import {
  GGML_BLOCK, GGML_MAX_DIMS, GGML_MAX_NAME, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, type GgmlType,
  type GgufArray, type GgufValue, VALUE_SIZE, ValueType, ggmlTypeName, padTo,
} from './format.ts';

/** One tensor as the file describes it. */
export interface GgufTensorInfo {
  name: string;
  type: GgmlType;
  /** Dimensions in ggml order: dims[0] is the row length (the last dimension of the row-major shape). */
  dims: number[];
  /** Absolute byte offset of the data in the file. */
  offset: number;
  bytes: number;
}

const HEADER_CHUNK = 1 << 20;
/** String arrays longer than this (vocabularies, merges) are decoded only when read. */
const LAZY_STRINGS = 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Sequential reads of the header through a buffer, every read checked against the file size. */
class HeaderCursor {
  pos = 0;
  private buf = Buffer.alloc(HEADER_CHUNK);
  private bufStart = 0;
  private bufLen = 0;

  constructor(private fd: number, readonly size: number, private fail: (msg: string) => never) {}

  /** Bytes left after the cursor. */
  remaining(): number {
    return this.size - this.pos;
  }

  /** Makes bytes [pos, pos + n) available in the buffer (n ≤ HEADER_CHUNK). */
  private ensure(n: number, what: string): number {
    if (n > this.remaining()) this.fail(`truncated: ${what} at byte ${this.pos} needs ${n} bytes, the file ends at ${this.size}`);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.bufLen) {
      this.bufStart = this.pos;
      this.bufLen = 0;
      const want = Math.min(HEADER_CHUNK, this.size - this.pos);
      while (this.bufLen < want) {
        const got = readSync(this.fd, this.buf, this.bufLen, want - this.bufLen, this.bufStart + this.bufLen);
        if (got === 0) this.fail(`short read at byte ${this.bufStart + this.bufLen} (the file changed while reading?)`);
        this.bufLen += got;
      }
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  u8(what: string): number { return this.buf[this.ensure(1, what)]; }
  i8(what: string): number { return this.buf.readInt8(this.ensure(1, what)); }
  u16(what: string): number { return this.buf.readUInt16LE(this.ensure(2, what)); }
  i16(what: string): number { return this.buf.readInt16LE(this.ensure(2, what)); }
  u32(what: string): number { return this.buf.readUInt32LE(this.ensure(4, what)); }
  i32(what: string): number { return this.buf.readInt32LE(this.ensure(4, what)); }
  f32(what: string): number { return this.buf.readFloatLE(this.ensure(4, what)); }
  f64(what: string): number { return this.buf.readDoubleLE(this.ensure(8, what)); }
  u64(what: string): bigint { return this.buf.readBigUInt64LE(this.ensure(8, what)); }
  i64(what: string): bigint { return this.buf.readBigInt64LE(this.ensure(8, what)); }

  /** A u64 count or length that must fit in what is left of the file at `unit` bytes each. */
  count(what: string, unit: number): number {
    const at = this.pos;
    const n = this.u64(what);
    if (n > BigInt(Math.floor(this.remaining() / Math.max(unit, 1)))) {
      this.fail(`${what} at byte ${at} is ${n}, more than the ${this.remaining()} bytes left in the file can hold (corrupt or truncated)`);
    }
    return Number(n);
  }

  /** `n` raw bytes (n already checked against the file size). */
  bytes(n: number, what: string): Uint8Array {
    if (n <= HEADER_CHUNK) return this.buf.subarray(this.ensure(n, what), this.pos - this.bufStart);
    if (n > this.remaining()) this.fail(`truncated: ${what} at byte ${this.pos} needs ${n} bytes`);
    const out = Buffer.alloc(n);
    let done = 0;
    while (done < n) {
      const got = readSync(this.fd, out, done, n - done, this.pos + done);
      if (got === 0) this.fail(`short read at byte ${this.pos + done}`);
      done += got;
    }
    this.pos += n;
    return out;
  }

  /** Steps over a string, checking only its length against the file. */
  skipString(what: string): void {
    const n = this.count(`length of ${what}`, 1);
    if (n > this.remaining()) this.fail(`truncated: ${what} at byte ${this.pos} needs ${n} bytes`);
    this.pos += n;
  }

  string(what: string): string {
    const at = this.pos;
    const n = this.count(`length of ${what}`, 1);
    try {
      return utf8.decode(this.bytes(n, what));
    } catch (e) {
      if (e instanceof UserError) throw e;
      return this.fail(`${what} at byte ${at} is not valid UTF-8`);
    }
  }
}

/** An open GGUF file: its metadata and tensor descriptions; tensor data is read on demand. Call `close()`. */
export class GgufFile {
  version = 0;
  alignment = GGUF_DEFAULT_ALIGNMENT;
  /** Where the tensor data section starts. */
  dataStart = 0;
  readonly size: number;
  readonly metadata = new Map<string, GgufValue>();
  readonly tensors = new Map<string, GgufTensorInfo>();
  private fd: number;
  private closed = false;

  constructor(readonly path: string) {
    const st = statSync(path, { throwIfNoEntry: false });
    if (!st) throw new UserError(`${path}: GGUF file not found`);
    if (!st.isFile()) throw new UserError(`${path}: not a regular file; a GGUF model file is expected here`);
    try {
      this.fd = openSync(path, 'r');
    } catch (e) {
      throw new UserError(`${path}: cannot open the GGUF file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      this.size = fstatSync(this.fd).size;
      this.parse();
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  /** Throws the one-line error of a malformed file. */
  fail(msg: string): never {
    throw new UserError(`${this.path}: ${msg}; not a valid GGUF file (re-download or re-export it)`);
  }

  /** Throws the one-line error of a well-formed file holding something mka does not support. */
  refuse(msg: string): never {
    throw new UserError(`${this.path}: ${msg}`);
  }

  private parse(): void {
    const c = new HeaderCursor(this.fd, this.size, (m) => this.fail(m));
    if (this.size < 4) this.fail(`truncated: ${this.size} bytes, no GGUF magic`);
    const magic = c.u32('magic');
    if (magic !== GGUF_MAGIC) {
      const shown = Buffer.alloc(4);
      shown.writeUInt32LE(magic);
      this.fail(`wrong magic ${JSON.stringify(shown.toString('latin1'))} (expected "GGUF")`);
    }
    this.version = c.u32('version');
    if (this.version !== 2 && this.version !== GGUF_VERSION) this.fail(`unsupported GGUF version ${this.version} (mka reads versions 2 and 3)`);
    // every tensor description takes at least 8+4+4+8 bytes; every key-value pair at least 8+4+1
    const nTensors = c.count('tensor count', 24);
    const nKv = c.count('metadata count', 13);

    for (let i = 0; i < nKv; i++) {
      const key = c.string(`metadata key ${i}`);
      // GGUF keys are ASCII names (llama.arch.field): anything else is corruption, and would be quoted raw in messages
      if (!/^[\x20-\x7e]+$/.test(key)) this.fail(`metadata key ${i} (${showJson(key)}) is not a printable ASCII name`);
      if (this.metadata.has(key)) this.fail(`metadata key "${key}" appears twice`);
      this.metadata.set(key, this.readValue(c, key));
    }
    const align = this.metadata.get('general.alignment');
    if (align) {
      if (align.type !== ValueType.UINT32) this.fail('general.alignment must be a u32');
      const a = (align as { value: number }).value;
      if (a === 0 || (a & (a - 1)) !== 0) this.fail(`general.alignment ${a} is not a power of 2`);
      this.alignment = a;
    }

    const infos: { name: string; type: GgmlType; dims: number[]; rel: bigint }[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = c.string(`name of tensor ${i}`);
      if (/[\x00-\x1f\x7f]/.test(name)) this.fail(`the name of tensor ${i} (${showJson(name)}) holds control characters`);
      if (Buffer.byteLength(name) >= GGML_MAX_NAME) this.fail(`tensor name "${name.slice(0, 80)}" is ${Buffer.byteLength(name)} bytes (ggml allows ${GGML_MAX_NAME - 1})`);
      if (names.has(name)) this.fail(`tensor "${name}" appears twice`);
      names.add(name);
      const nDims = c.u32(`dimension count of tensor "${name}"`);
      if (nDims > GGML_MAX_DIMS) this.fail(`tensor "${name}" has ${nDims} dimensions (ggml allows ${GGML_MAX_DIMS})`);
      const dims: number[] = [];
      let numel = 1;
      for (let d = 0; d < nDims; d++) {
        const v = c.i64(`dimension ${d} of tensor "${name}"`);
        if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`tensor "${name}" has dimension ${d} of ${v}`);
        dims.push(Number(v));
        numel *= Number(v);
        if (numel > Number.MAX_SAFE_INTEGER) this.fail(`tensor "${name}" has absurd dimensions [${dims}]`);
      }
      const type = c.u32(`type of tensor "${name}"`);
      const typeName = ggmlTypeName(type);
      if (typeName === null) this.fail(`tensor "${name}" has unknown ggml type ${type}`);
      const rowLength = dims[0] ?? 1;
      if (rowLength % GGML_BLOCK[type as GgmlType].block !== 0) {
        this.fail(`tensor "${name}" of type ${typeName} has rows of ${rowLength} elements, not a multiple of its block size ${GGML_BLOCK[type as GgmlType].block}`);
      }
      infos.push({ name, type: type as GgmlType, dims, rel: c.u64(`data offset of tensor "${name}"`) });
    }

    this.dataStart = padTo(c.pos, this.alignment);
    const dataLen = this.size - this.dataStart;
    // as llama.cpp's gguf_init_from_file requires: each tensor's data right after the previous one's, padded to
    // the alignment, so a type or dimension that changes a tensor's size moves every offset after it
    let expected = 0;
    for (const t of infos) {
      const rowLength = t.dims[0] ?? 1;
      const rows = t.dims.slice(1).reduce((a, b) => a * b, 1);
      const { block, bytes: blockBytes } = GGML_BLOCK[t.type];
      const bytes = (rowLength / block) * blockBytes * rows;
      if (t.rel % BigInt(this.alignment) !== 0n) this.fail(`tensor "${t.name}" has data offset ${t.rel}, not a multiple of the alignment ${this.alignment}`);
      if (t.rel > BigInt(dataLen) || Number(t.rel) + bytes > dataLen) {
        this.fail(`tensor "${t.name}" (${bytes} bytes at data offset ${t.rel}) ends past the end of the file (${this.size} bytes: truncated?)`);
      }
      if (Number(t.rel) !== expected) {
        this.fail(`tensor "${t.name}" has data offset ${t.rel}, but the tensors before it end at ${expected} (a type, dimension or offset does not match the data)`);
      }
      expected = padTo(expected + bytes, this.alignment);
      this.tensors.set(t.name, { name: t.name, type: t.type, dims: t.dims, offset: this.dataStart + Number(t.rel), bytes });
    }
    const byStart = [...this.tensors.values()].filter((t) => t.bytes > 0).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < byStart.length; i++) {
      const [a, b] = [byStart[i - 1], byStart[i]];
      if (b.offset < a.offset + a.bytes) this.fail(`tensors "${a.name}" and "${b.name}" overlap`);
    }
  }

  private readValue(c: HeaderCursor, key: string): GgufValue {
    const type = c.u32(`type of "${key}"`);
    if (type === ValueType.ARRAY) {
      const elem = c.u32(`element type of "${key}"`);
      if (elem === ValueType.ARRAY) this.fail(`"${key}" is an array of arrays, which GGUF does not allow`);
      if (elem === ValueType.STRING) {
        const n = c.count(`element count of "${key}"`, 8);
        if (n <= LAZY_STRINGS) {
          const values = new Array<string>(n);
          for (let i = 0; i < n; i++) values[i] = c.string(`"${key}"[${i}]`);
          return { type: ValueType.ARRAY, array: { type: ValueType.STRING, values } };
        }
        // a vocabulary: its lengths are checked now, its strings decoded when first asked for
        const start = c.pos;
        for (let i = 0; i < n; i++) c.skipString(`"${key}"[${i}]`);
        return { type: ValueType.ARRAY, array: this.lazyStrings(key, start, c.pos, n) };
      }
      const size = VALUE_SIZE[elem as ValueType];
      if (size === undefined) this.fail(`"${key}" has unknown array element type ${elem}`);
      const n = c.count(`element count of "${key}"`, size);
      const raw = c.bytes(n * size, `"${key}"`);
      return { type: ValueType.ARRAY, array: { type: elem, values: typedArray(elem as ValueType, raw, n) } as GgufArray };
    }
    const what = `value of "${key}"`;
    switch (type) {
      case ValueType.UINT8: return { type, value: c.u8(what) };
      case ValueType.INT8: return { type, value: c.i8(what) };
      case ValueType.UINT16: return { type, value: c.u16(what) };
      case ValueType.INT16: return { type, value: c.i16(what) };
      case ValueType.UINT32: return { type, value: c.u32(what) };
      case ValueType.INT32: return { type, value: c.i32(what) };
      case ValueType.FLOAT32: return { type, value: c.f32(what) };
      case ValueType.BOOL: {
        const b = c.u8(what);
        if (b > 1) this.fail(`${what} is ${b}, not a boolean (0 or 1)`);
        return { type, value: b === 1 };
      }
      case ValueType.STRING: return { type, value: c.string(what) };
      case ValueType.UINT64: return { type, value: c.u64(what) };
      case ValueType.INT64: return { type, value: c.i64(what) };
      case ValueType.FLOAT64: return { type, value: c.f64(what) };
      default: return this.fail(`"${key}" has unknown value type ${type}`);
    }
  }

  /** A string array whose `values` are read and decoded from bytes [start, end) of the file on first use. */
  private lazyStrings(key: string, start: number, end: number, n: number): { type: ValueType.STRING; values: string[] } {
    let values: string[] | null = null;
    const decode = (): string[] => {
      if (this.closed) throw new Error(`${this.path}: "${key}" read after the file was closed`);
      const bytes = Buffer.alloc(end - start);
      let done = 0;
      while (done < bytes.length) {
        const got = readSync(this.fd, bytes, done, bytes.length - done, start + done);
        if (got === 0) this.fail(`short read of "${key}" (the file was truncated while open?)`);
        done += got;
      }
      const out = new Array<string>(n);
      let at = 0;
      for (let i = 0; i < n; i++) {
        const len = Number(bytes.readBigUInt64LE(at));
        try {
          out[i] = utf8.decode(bytes.subarray(at + 8, at + 8 + len));
        } catch {
          this.fail(`"${key}"[${i}] at byte ${start + at + 8} is not valid UTF-8`);
        }
        at += 8 + len;
      }
      return out;
    };
    return {
      type: ValueType.STRING,
      get values() {
        values ??= decode();
        return values;
      },
    };
  }

  /** A tensor's bytes exactly as stored, in a fresh buffer of its own. */
  readTensor(name: string): Uint8Array {
    const t = this.tensors.get(name);
    if (!t) throw new UserError(`${this.path}: no tensor named "${name}"`);
    const data = new Uint8Array(t.bytes);
    let done = 0;
    while (done < data.length) {
      const got = readSync(this.fd, data, done, data.length - done, t.offset + done);
      if (got === 0) throw new UserError(`${this.path}: short read of tensor "${name}" (the file was truncated while open?)`);
      done += got;
    }
    return data;
  }

  /** Bytes [start, end) of a tensor's data (for reading a few rows). */
  readTensorRange(name: string, start: number, end: number): Uint8Array {
    const t = this.tensors.get(name);
    if (!t) throw new UserError(`${this.path}: no tensor named "${name}"`);
    if (start < 0 || end > t.bytes || start > end) throw new Error(`readTensorRange: [${start}, ${end}) outside "${name}" (${t.bytes} bytes)`);
    const data = new Uint8Array(end - start);
    let done = 0;
    while (done < data.length) {
      const got = readSync(this.fd, data, done, data.length - done, t.offset + start + done);
      if (got === 0) throw new UserError(`${this.path}: short read of tensor "${name}" (the file was truncated while open?)`);
      done += got;
    }
    return data;
  }

  close(): void {
    this.closed = true;
    closeSync(this.fd);
  }

  // Typed metadata accessors: each throws a one-line error naming the key when it is missing or of another type.

  has(key: string): boolean {
    return this.metadata.has(key);
  }

  /** An integer value of any integer type, or `def` when absent (undefined: required). */
  int(key: string, def?: number): number {
    const v = this.metadata.get(key);
    if (!v) return def ?? this.fail(`metadata "${key}" is missing`);
    if (v.type === ValueType.ARRAY || v.type === ValueType.STRING || v.type === ValueType.BOOL || v.type === ValueType.FLOAT32 || v.type === ValueType.FLOAT64) {
      this.fail(`metadata "${key}" must be an integer, not ${describeValue(v)}`);
    }
    const n = Number(v.value);
    if (!Number.isSafeInteger(n)) this.fail(`metadata "${key}" is ${v.value}, out of range`);
    return n;
  }

  /** A number of any numeric type, or `def` when absent. */
  float(key: string, def?: number): number {
    const v = this.metadata.get(key);
    if (!v) return def ?? this.fail(`metadata "${key}" is missing`);
    if (v.type === ValueType.ARRAY || v.type === ValueType.STRING || v.type === ValueType.BOOL) this.fail(`metadata "${key}" must be a number, not ${describeValue(v)}`);
    return Number(v.value);
  }

  bool(key: string, def?: boolean): boolean {
    const v = this.metadata.get(key);
    if (!v) return def ?? this.fail(`metadata "${key}" is missing`);
    if (v.type !== ValueType.BOOL) this.fail(`metadata "${key}" must be a boolean, not ${describeValue(v)}`);
    return (v as { value: boolean }).value;
  }

  string(key: string, def?: string): string {
    const v = this.metadata.get(key);
    if (!v) return def ?? this.fail(`metadata "${key}" is missing`);
    if (v.type !== ValueType.STRING) this.fail(`metadata "${key}" must be a string, not ${describeValue(v)}`);
    return (v as { value: string }).value;
  }

  /** An array value, optionally of one element type; undefined when absent and not required. */
  array(key: string, opts: { type?: ValueType | ValueType[]; required?: boolean } = {}): GgufArray | undefined {
    const v = this.metadata.get(key);
    if (!v) return opts.required ? this.fail(`metadata "${key}" is missing`) : undefined;
    if (v.type !== ValueType.ARRAY) this.fail(`metadata "${key}" must be an array, not ${describeValue(v)}`);
    const want = opts.type === undefined ? null : [opts.type].flat();
    if (want && !want.includes(v.array.type)) this.fail(`metadata "${key}" must be an array of ${want.map((t) => ValueType[t].toLowerCase()).join(' or ')}, not of ${ValueType[v.array.type].toLowerCase()}`);
    return v.array;
  }
}

function describeValue(v: GgufValue): string {
  return v.type === ValueType.ARRAY ? `an array of ${ValueType[v.array.type].toLowerCase()}` : `a ${ValueType[v.type].toLowerCase()}`;
}

/** Little-endian array elements of a fixed-size type as a typed array (copied, so alignment does not matter). */
function typedArray(type: ValueType, raw: Uint8Array, n: number): ArrayLike<number | bigint | boolean> {
  const copy = new Uint8Array(raw); // own, aligned buffer
  const b = copy.buffer;
  switch (type) {
    case ValueType.UINT8: return copy;
    case ValueType.INT8: return new Int8Array(b, 0, n);
    case ValueType.UINT16: return new Uint16Array(b, 0, n);
    case ValueType.INT16: return new Int16Array(b, 0, n);
    case ValueType.UINT32: return new Uint32Array(b, 0, n);
    case ValueType.INT32: return new Int32Array(b, 0, n);
    case ValueType.FLOAT32: return new Float32Array(b, 0, n);
    case ValueType.BOOL: return Array.from(copy, (x) => x !== 0);
    case ValueType.UINT64: return new BigUint64Array(b, 0, n);
    case ValueType.INT64: return new BigInt64Array(b, 0, n);
    case ValueType.FLOAT64: return new Float64Array(b, 0, n);
    default: throw new Error(`typedArray: not a fixed-size type ${type}`);
  }
}

/** Whether `path` is a regular file beginning with the GGUF magic (how `--model F.gguf` is recognised). */
export function isGgufFile(path: string): boolean {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isFile()) return false;
  if (path.toLowerCase().endsWith('.gguf')) return true;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === GGUF_MAGIC;
  } finally {
    closeSync(fd);
  }
}

/** Opens the GGUF file at `path`, gives it to `use` and closes it, whatever `use` does. */
export function withGguf<T>(path: string, use: (g: GgufFile) => T): T {
  const g = new GgufFile(path);
  try {
    return use(g);
  } finally {
    g.close();
  }
}
