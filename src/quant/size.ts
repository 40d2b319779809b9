/**
 * The size of a model in bytes, for compression ratios that count bytes (layers removed × bits) as the
 * papers' "compression with quantization" does, beside the layer ratio: a float model at 16 bits per
 * weight (the BF16/FP16 checkpoints papers start from), or a quantized one as mka quantize writes it
 * (packed linears, embedding at its bits and lm_head; norms and biases float32).
 */
import { type LlamaConfig, expectedTensors, splitLayerName } from '../model/config.ts';
import { packedBytes, packedDiskBytes, type PackedSpec } from '../io/packed.ts';
import { LINEARS, specFor } from './method.ts';
import { tableSpecs } from './quantize.ts';
import type { Quantization } from './registry.ts';

/** Bytes of a model of `config` with 16-bit float weights, or quantized by `q` (packed as stored on disk). */
export function modelBytes(config: LlamaConfig, q: Quantization | null, opts: { keepEmbeddings?: boolean } = {}): number {
  const tables = q && !opts.keepEmbeddings ? tableSpecs(config, q.embeddingBits) : new Map<string, PackedSpec>();
  const linears = new Set(LINEARS.map((p) => `${p}.weight`));
  let bytes = 0;
  for (const [name, shape] of expectedTensors(config)) {
    const l = splitLayerName(name);
    const spec = q ? tables.get(name) ?? (l && linears.has(l.suffix) ? specFor(q.grid, shape[1]) : null) : null;
    const n = shape.reduce((a, d) => a * d, 1);
    if (spec) bytes += packedDiskBytes(shape[0], shape[1], spec);
    else bytes += n * (q && shape.length === 1 ? 4 : 2); // a quantized model keeps its norms and biases in float32
  }
  return bytes;
}

/** 1 − bytes / bytes of the original at 16 bits: the share of the original's size a compressed model saves. */
export function byteRatio(original: LlamaConfig, compressed: LlamaConfig, q: Quantization | null): number {
  return 1 - modelBytes(compressed, q) / modelBytes(original, null);
}

/** Bytes a model of `config` quantized by `q` holds in memory (packed weights with float32 scales and mins, float32 norms and biases). */
export function quantizedModelMemory(config: LlamaConfig, q: Quantization, opts: { keepEmbeddings?: boolean } = {}): number {
  const tables = opts.keepEmbeddings ? new Map<string, PackedSpec>() : tableSpecs(config, q.embeddingBits);
  const linears = new Set(LINEARS.map((p) => `${p}.weight`));
  let bytes = 0;
  for (const [name, shape] of expectedTensors(config)) {
    const l = splitLayerName(name);
    const spec = tables.get(name) ?? (l && linears.has(l.suffix) ? specFor(q.grid, shape[1]) : null);
    bytes += spec ? packedBytes(shape[0], shape[1], spec) : 4 * shape.reduce((a, d) => a * d, 1);
  }
  return bytes;
}
