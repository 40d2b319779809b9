/**
 * A streaming GGUF writer (version 3): the header (metadata and tensor descriptions, whose sizes are
 * known in advance) is written first, then each tensor's bytes as `produce` returns them, one tensor at
 * a time, each at an offset aligned to 32 bytes, laid out back to back as llama.cpp requires. The file
 * is written under a temporary name and renamed into place when complete (no half-written file).
 */
import { atomicWriteFile, writeAll } from '../io/atomic.ts';
import {
  GGML_BLOCK, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, type GgmlType, type GgufValue, VALUE_SIZE, ValueType, padTo,
} from './format.ts';

/** Typed metadata values for the writer. */
export const meta = {
  u32: (value: number): GgufValue => ({ type: ValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: ValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: ValueType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: ValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: ValueType.STRING, value }),
  strings: (values: string[]): GgufValue => ({ type: ValueType.ARRAY, array: { type: ValueType.STRING, values } }),
  f32s: (values: ArrayLike<number>): GgufValue => ({ type: ValueType.ARRAY, array: { type: ValueType.FLOAT32, values } }),
  i32s: (values: ArrayLike<number>): GgufValue => ({ type: ValueType.ARRAY, array: { type: ValueType.INT32, values } }),
};

export interface GgufTensorToWrite {
  name: string;
  /** ggml order: dims[0] is the row length. */
  dims: number[];
  type: GgmlType;
}

/** Bytes of a tensor's data. */
export function dataBytes(t: GgufTensorToWrite): number {
  const { block, bytes } = GGML_BLOCK[t.type];
  return (t.dims[0] / block) * bytes * t.dims.slice(1).reduce((a, b) => a * b, 1);
}

/** Little-endian encoder of header fields into growing chunks. */
class Encoder {
  private chunks: Buffer[] = [];
  length = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  i64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: ValueType, v: number | bigint | boolean | string): void {
    if (type === ValueType.STRING) return this.string(v as string);
    const b = Buffer.alloc(VALUE_SIZE[type]!);
    switch (type) {
      case ValueType.UINT8: b.writeUInt8(v as number); break;
      case ValueType.INT8: b.writeInt8(v as number); break;
      case ValueType.UINT16: b.writeUInt16LE(v as number); break;
      case ValueType.INT16: b.writeInt16LE(v as number); break;
      case ValueType.UINT32: b.writeUInt32LE(v as number); break;
      case ValueType.INT32: b.writeInt32LE(v as number); break;
      case ValueType.FLOAT32: b.writeFloatLE(v as number); break;
      case ValueType.BOOL: b.writeUInt8(v ? 1 : 0); break;
      case ValueType.UINT64: b.writeBigUInt64LE(BigInt(v as number | bigint)); break;
      case ValueType.INT64: b.writeBigInt64LE(BigInt(v as number | bigint)); break;
      case ValueType.FLOAT64: b.writeDoubleLE(v as number); break;
      default: throw new Error(`gguf writer: not a scalar type ${type}`);
    }
    this.push(b);
  }
  value(v: GgufValue): void {
    this.u32(v.type);
    if (v.type !== ValueType.ARRAY) return this.scalar(v.type, v.value);
    this.u32(v.array.type);
    this.u64(v.array.values.length);
    for (let i = 0; i < v.array.values.length; i++) this.scalar(v.array.type, v.array.values[i]);
  }
  padTo(align: number): void {
    const pad = padTo(this.length, align) - this.length;
    if (pad) this.push(Buffer.alloc(pad));
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

/**
 * Writes a GGUF file at `path`: the metadata in the order given, the tensors in the order given, the
 * data of each from `produce(name)` (exactly dataBytes(t) bytes). Returns the file size.
 */
export async function writeGguf(
  path: string,
  metadata: [string, GgufValue][],
  tensors: GgufTensorToWrite[],
  produce: (name: string) => Uint8Array | Promise<Uint8Array>,
): Promise<number> {
  const align = GGUF_DEFAULT_ALIGNMENT;
  const h = new Encoder();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(metadata.length);
  for (const [key, value] of metadata) {
    h.string(key);
    h.value(value);
  }
  let offset = 0;
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.i64(d);
    h.u32(t.type);
    h.u64(offset);
    offset = padTo(offset + dataBytes(t), align);
  }
  h.padTo(align);
  const header = h.bytes();
  await atomicWriteFile(path, async (fd) => {
    writeAll(fd, header);
    for (const t of tensors) {
      const data = await produce(t.name);
      const want = dataBytes(t);
      if (data.length !== want) throw new Error(`writeGguf: "${t.name}" has ${data.length} bytes, [${t.dims}] of type ${t.type} needs ${want}`);
      writeAll(fd, data);
      const pad = padTo(want, align) - want;
      if (pad) writeAll(fd, new Uint8Array(pad));
    }
  });
  return header.length + offset;
}
