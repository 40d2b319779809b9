/**
 * The GGUF file format (version 3, as ggml's gguf.h and llama.cpp define it): constants and types
 * shared by the reader and the writer.
 *
 * Layout, all little-endian: magic "GGUF", u32 version, i64 tensor count, i64 key-value count; the
 * key-value pairs (string key, u32 value type, value; arrays are u32 element type, u64 count, elements;
 * strings are u64 byte length then UTF-8 bytes); per tensor its name, u32 dimension count, i64 per
 * dimension (ggml order: the first is the row length), u32 ggml type and u64 data offset; padding to
 * the alignment (`general.alignment`, default 32); then the tensor data, each tensor at an aligned
 * offset relative to the start of that data section.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS and GGML_MAX_NAME: tensors have at most 4 dimensions and names under 64 bytes. */
export const GGML_MAX_DIMS = 4;
export const GGML_MAX_NAME = 64;

/** Value types of the key-value section (gguf_type). */
export enum ValueType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

/** Bytes of one value of a fixed-size type (strings and arrays have none). */
export const VALUE_SIZE: Partial<Record<ValueType, number>> = {
  [ValueType.UINT8]: 1, [ValueType.INT8]: 1, [ValueType.UINT16]: 2, [ValueType.INT16]: 2,
  [ValueType.UINT32]: 4, [ValueType.INT32]: 4, [ValueType.FLOAT32]: 4, [ValueType.BOOL]: 1,
  [ValueType.UINT64]: 8, [ValueType.INT64]: 8, [ValueType.FLOAT64]: 8,
};

/** A metadata value as read: numbers (64-bit integers as bigint), booleans, strings, or arrays of one type. */
export type GgufScalar = number | bigint | boolean | string;
export type GgufArray =
  | { type: ValueType.STRING; values: string[] }
  | { type: Exclude<ValueType, ValueType.STRING | ValueType.ARRAY>; values: ArrayLike<number | bigint | boolean> };
export type GgufValue = { type: Exclude<ValueType, ValueType.ARRAY>; value: GgufScalar } | { type: ValueType.ARRAY; array: GgufArray };

/** ggml tensor types (enum ggml_type); the gaps are types removed from ggml. */
export enum GgmlType {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
  MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
}

/** Elements per block and bytes per block of every ggml type (ggml's type_traits, gguf-py 0.19's GGML_QUANT_SIZES). */
export const GGML_BLOCK: Record<GgmlType, { block: number; bytes: number }> = {
  [GgmlType.F32]: { block: 1, bytes: 4 },
  [GgmlType.F16]: { block: 1, bytes: 2 },
  [GgmlType.Q4_0]: { block: 32, bytes: 18 },
  [GgmlType.Q4_1]: { block: 32, bytes: 20 },
  [GgmlType.Q5_0]: { block: 32, bytes: 22 },
  [GgmlType.Q5_1]: { block: 32, bytes: 24 },
  [GgmlType.Q8_0]: { block: 32, bytes: 34 },
  [GgmlType.Q8_1]: { block: 32, bytes: 40 },
  [GgmlType.Q2_K]: { block: 256, bytes: 84 },
  [GgmlType.Q3_K]: { block: 256, bytes: 110 },
  [GgmlType.Q4_K]: { block: 256, bytes: 144 },
  [GgmlType.Q5_K]: { block: 256, bytes: 176 },
  [GgmlType.Q6_K]: { block: 256, bytes: 210 },
  [GgmlType.Q8_K]: { block: 256, bytes: 292 },
  [GgmlType.IQ2_XXS]: { block: 256, bytes: 66 },
  [GgmlType.IQ2_XS]: { block: 256, bytes: 74 },
  [GgmlType.IQ3_XXS]: { block: 256, bytes: 98 },
  [GgmlType.IQ1_S]: { block: 256, bytes: 50 },
  [GgmlType.IQ4_NL]: { block: 32, bytes: 18 },
  [GgmlType.IQ3_S]: { block: 256, bytes: 110 },
  [GgmlType.IQ2_S]: { block: 256, bytes: 82 },
  [GgmlType.IQ4_XS]: { block: 256, bytes: 136 },
  [GgmlType.I8]: { block: 1, bytes: 1 },
  [GgmlType.I16]: { block: 1, bytes: 2 },
  [GgmlType.I32]: { block: 1, bytes: 4 },
  [GgmlType.I64]: { block: 1, bytes: 8 },
  [GgmlType.F64]: { block: 1, bytes: 8 },
  [GgmlType.IQ1_M]: { block: 256, bytes: 56 },
  [GgmlType.BF16]: { block: 1, bytes: 2 },
  [GgmlType.TQ1_0]: { block: 256, bytes: 54 },
  [GgmlType.TQ2_0]: { block: 256, bytes: 66 },
  [GgmlType.MXFP4]: { block: 32, bytes: 17 },
  [GgmlType.NVFP4]: { block: 64, bytes: 36 },
  [GgmlType.Q1_0]: { block: 128, bytes: 18 },
};

/** The ggml name of a type number ("Q4_0"), or null for a number ggml does not define. */
export function ggmlTypeName(t: number): string | null {
  return Number.isInteger(t) && t in GGML_BLOCK ? GgmlType[t] : null;
}

/** Bytes of a tensor of `type` with `rowLength` elements per row and `rows` rows (row length must divide into blocks). */
export function tensorBytes(type: GgmlType, rowLength: number, rows: number): number {
  const { block, bytes } = GGML_BLOCK[type];
  return (rowLength / block) * bytes * rows;
}

/** The tensor types mka writes (and reads). */
export const SUPPORTED_TYPES = [GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0, GgmlType.Q4_0] as const;
export type SupportedType = (typeof SUPPORTED_TYPES)[number];

/** The tensor types mka reads: those it writes and the other block types llama.cpp's presets use; the rest are refused by name. */
export const READ_TYPES = [
  ...SUPPORTED_TYPES, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K,
] as const;
export type ReadType = (typeof READ_TYPES)[number];

/** `general.file_type` (llama_ftype) of a file whose 2-D weights are mostly of a type. */
export const FILE_TYPE: Record<SupportedType, number> = {
  [GgmlType.F32]: 0, [GgmlType.F16]: 1, [GgmlType.Q4_0]: 2, [GgmlType.Q8_0]: 7, [GgmlType.BF16]: 32,
};

/** `general.quantization_version` llama.cpp's converters write (GGML_QNT_VERSION). */
export const QUANTIZATION_VERSION = 2;

/** Token types of `tokenizer.ggml.token_type` (llama_token_type). */
export enum TokenType {
  UNDEFINED = 0, NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6,
}

/** Rounds up to a multiple of `align`. */
export function padTo(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}
