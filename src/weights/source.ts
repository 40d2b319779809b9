/**
 * Where weight writers (the exports, the compressor) read from: a config plus tensors by Hugging Face name, read one at a time.
 * A checkpoint directory, a loaded model, or tensors computed on the fly (a merge) all fit.
 */
import { type LlamaConfig, expectedTensors } from '../model/config.ts';
import { openModelDir, readHfWeight, type LlamaModel } from '../model/model.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { DType } from '../io/safetensors.ts';
import type { PackedMatrix, PackedSpec } from '../io/packed.ts';

/** A tensor's bytes as stored (little-endian), without conversion: 16-bit weights stay 16-bit. */
export interface RawTensor {
  dtype: DType;
  bytes: Uint8Array;
}

/** A model's weights as a stream of named float32 tensors. */
export interface TensorSource {
  config: LlamaConfig;
  /** Every tensor to write, in Hugging Face order (embeddings, layers, norm, lm_head). */
  names: string[];
  shape(name: string): number[];
  /** The tensor's values; exporters call this once per tensor and drop the result before the next. */
  read(name: string): Float32Array | Promise<Float32Array>;
  /**
   * The tensor's stored bytes when the source has them as is (a checkpoint, an unmerged layer), else
   * null; writers use it to copy 16-bit weights without a float32 round trip.
   */
  readRaw?(name: string): RawTensor | null;
  /**
   * How tensor `name` is written packed (src/io/packed.ts), or null/absent for float: known before any
   * tensor is read, since the file header comes first. The source's config then carries quantization_config.
   */
  packed?(name: string): PackedSpec | null;
  /** The packed tensor `name` (packed(name) is not null); called once, in `names` order. */
  readPacked?(name: string): PackedMatrix | Promise<PackedMatrix>;
}

/** A tensor source whose reads are synchronous (checkpoints, resident models, plans over them). */
export type SyncTensorSource = Omit<TensorSource, 'read'> & { read(name: string): Float32Array };

/** A checkpoint tensor's bytes exactly as stored in its safetensors file. */
function readRawTensor(ckpt: Checkpoint, name: string): RawTensor | null {
  if (ckpt.packedInfo?.(name)) return null; // packed: read() dequantizes it
  if (!ckpt.readRaw) throw new Error(`${ckpt.dir}: this checkpoint cannot give stored bytes`);
  const { dtype, data } = ckpt.readRaw(name);
  if (dtype === 'I8' || dtype === 'U8') throw new Error(`${ckpt.dir}: "${name}" holds ${dtype} quants, not values`);
  return { dtype, bytes: data };
}

/** Reads a model directory tensor by tensor; `close()` releases its files. */
export function checkpointSource(dir: string): SyncTensorSource & { readRaw(name: string): RawTensor | null; close(): void } {
  const { config, ckpt } = openModelDir(dir);
  const shapes = expectedTensors(config);
  return {
    config,
    names: [...shapes.keys()],
    shape: (name) => shapes.get(name)!,
    read: (name) => ckpt.read(name),
    readRaw: (name) => readRawTensor(ckpt, name),
    close: () => ckpt.close(),
  };
}

/** A loaded model's weights in Hugging Face layout (resident, laid out for wasm, or read from its checkpoint). */
export function modelSource(model: LlamaModel): SyncTensorSource {
  const shapes = expectedTensors(model.config);
  return {
    config: model.config,
    names: [...shapes.keys()],
    shape: (name) => shapes.get(name)!,
    read: (name) => readHfWeight(model, name),
  };
}
