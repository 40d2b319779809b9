/**
 * A Hugging Face checkpoint directory: `model.safetensors`, or shards listed in
 * `model.safetensors.index.json`. Tensors are read lazily by their HF names.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { showJson } from './read.ts';
import { SafetensorsFile, type SafetensorsOptions, type StoredDType, type TensorInfo } from './safetensors.ts';
import { anyJson, object, optional, readChecked, record, string } from './schema.ts';
import type { PackedInfo, PackedMatrix } from './packed.ts';

/** Weight files of other formats, and how to turn them into safetensors. */
const PICKLE_FILE = /\.(bin|pt|pth|ckpt)$/;
const CONVERT_HINT = 'convert it to safetensors first, e.g. in Python: AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT, safe_serialization=True)';

/** How a tensor is stored: safetensors' types, or (GGUF) one of ggml's block types. */
export type CheckpointDtype = StoredDType | 'Q8_0' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K';

export interface Checkpoint {
  readonly dir: string;
  /** Every tensor name, in file order. */
  names(): string[];
  info(name: string): (Omit<TensorInfo, 'dtype'> & { dtype: CheckpointDtype; file: string }) | undefined;
  /** Reads a tensor as float32 (converted from F16/BF16). */
  read(name: string): Float32Array;
  /**
   * Reads a tensor's bytes as stored (see SafetensorsFile.readRaw), or as float32 bytes when stored in
   * blocks; absent on wrappers that transform values.
   */
  readRaw?(name: string): { dtype: StoredDType; data: Uint8Array };
  /** Keeps a block-quantized tensor's stored bytes in memory, so later reads dequantize without the disk (GGUF). */
  hold?(name: string): void;
  /** The name of a tensor as the file spells it, for messages (GGUF: "blk.0.attn_q.weight"). */
  label?(name: string): string;
  /** Where the config came from, for messages (default "config.json"). */
  readonly configSource?: string;
  /** Total bytes of tensor data on disk. */
  bytesOnDisk(): number;
  /**
   * How weight `name` (Hugging Face name) is packed, or null when stored as floats; present on checkpoints
   * opened for a model (src/model/packed-checkpoint.ts), whose read(name) then dequantizes.
   */
  packedInfo?(name: string): PackedInfo | null;
  /** A packed weight's parts as stored (packedInfo(name) is not null). */
  readPacked?(name: string): PackedMatrix;
  close(): void;
}

/** Whether NaN and ±Infinity weights are read without refusal (`--allow-nonfinite` sets MKA_ALLOW_NONFINITE=1). */
export function nonFiniteAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.MKA_ALLOW_NONFINITE === '1';
}

/** model.safetensors.index.json (transformers' layout; weights/hf-writer.ts writes it): each tensor's shard file. */
export const SAFETENSORS_INDEX = object({ metadata: optional(record(anyJson)), weight_map: record(string) });

/** Reads and checks a safetensors index (a one-line UserError naming the file and `fix`). */
export function readSafetensorsIndex(path: string, fix = 're-download or re-export the model'): { weight_map: Record<string, string> } {
  return readChecked(path, SAFETENSORS_INDEX, 'safetensors index', fix);
}

/**
 * Opens the safetensors checkpoint in `dir`, validating every header and the index. Every tensor read
 * is checked for NaN and ±Infinity (refused naming the tensor) unless `allowNonFinite`.
 */
export function openCheckpoint(dir: string, opts: SafetensorsOptions = { allowNonFinite: nonFiniteAllowed() }): Checkpoint {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  const files = new Map<string, SafetensorsFile>();
  const owner = new Map<string, SafetensorsFile>();
  try {
    if (existsSync(indexPath)) {
      const index = readSafetensorsIndex(indexPath);
      const root = resolve(dir);
      for (const [name, shard] of Object.entries(index.weight_map)) {
        if (shard === '') {
          throw new UserError(`${indexPath}: the shard of ${showJson(name, 200)} in weight_map must be a file name, not ${showJson(shard, 200)}; re-download or re-export the model`);
        }
        const p = resolve(root, shard);
        const rel = relative(root, p);
        if (isAbsolute(shard) || rel.startsWith('..') || isAbsolute(rel)) {
          throw new UserError(`${indexPath}: shard path ${showJson(shard, 200)} for ${showJson(name, 200)} leaves the model directory`);
        }
        if (!files.has(shard)) {
          if (!existsSync(p)) throw new UserError(`${indexPath}: shard ${showJson(shard, 200)} listed for ${showJson(name, 200)} is missing from ${dir}`);
          if (!statSync(p).isFile()) throw new UserError(`${p}: shard ${showJson(shard, 200)} listed for ${showJson(name, 200)} is not a regular file; re-download the model`);
          files.set(shard, new SafetensorsFile(p, opts));
        }
        const f = files.get(shard)!;
        if (!f.tensors.has(name)) throw new UserError(`${indexPath}: ${showJson(name, 200)} is listed in ${showJson(shard, 200)} but that shard does not hold it`);
        owner.set(name, f);
      }
    } else if (existsSync(single)) {
      const f = new SafetensorsFile(single, opts);
      files.set('model.safetensors', f);
      for (const name of f.tensors.keys()) owner.set(name, f);
    } else {
      const pickles = existsSync(dir) && statSync(dir).isDirectory() ? readdirSync(dir).filter((f) => PICKLE_FILE.test(f)) : [];
      if (pickles.length) throw new UserError(`${dir}: holds PyTorch pickle weights (${pickles.slice(0, 2).join(', ')}) but no safetensors; mka reads only safetensors: ${CONVERT_HINT}`);
      throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json (is it a Hugging Face model directory?)`);
    }
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }
  return {
    dir,
    names: () => [...owner.keys()],
    info: (name) => {
      const f = owner.get(name);
      const t = f?.tensors.get(name);
      return t && f ? { ...t, file: f.path } : undefined;
    },
    read: (name) => {
      const f = owner.get(name);
      if (!f) throw new UserError(`${dir}: checkpoint has no tensor "${name}"`);
      return f.read(name);
    },
    readRaw: (name) => {
      const f = owner.get(name);
      if (!f) throw new UserError(`${dir}: checkpoint has no tensor "${name}"`);
      return f.readRaw(name);
    },
    bytesOnDisk: () => [...files.values()].reduce((a, f) => a + statSync(f.path).size, 0),
    close: () => {
      for (const f of files.values()) f.close();
    },
  };
}
