/**
 * A Hugging Face checkpoint directory: `model.safetensors`, or shards listed in
 * `model.safetensors.index.json`. Tensors are read lazily by their HF names.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { SafetensorsFile, type DType, type TensorInfo } from './safetensors.ts';

export interface Checkpoint {
  readonly dir: string;
  /** Every tensor name, in file order. */
  names(): string[];
  info(name: string): (TensorInfo & { file: string }) | undefined;
  /** Reads a tensor as float32 (converted from F16/BF16). */
  read(name: string): Float32Array;
  /** Reads a tensor's bytes as stored (see SafetensorsFile.readRaw); absent on wrappers that transform values. */
  readRaw?(name: string): { dtype: DType; data: Uint8Array };
  /** Total bytes of tensor data on disk. */
  bytesOnDisk(): number;
  close(): void;
}

/** Opens the safetensors checkpoint in `dir`, validating every header and the index. */
export function openCheckpoint(dir: string): Checkpoint {
  const single = join(dir, 'model.safetensors');
  const indexPath = join(dir, 'model.safetensors.index.json');
  const files = new Map<string, SafetensorsFile>();
  const owner = new Map<string, SafetensorsFile>();
  try {
    if (existsSync(indexPath)) {
      let index: { weight_map?: Record<string, string> };
      try {
        index = JSON.parse(readFileSync(indexPath, 'utf8'));
      } catch (e) {
        throw new UserError(`${indexPath}: invalid JSON (${(e as Error).message})`);
      }
      if (!index.weight_map || typeof index.weight_map !== 'object') {
        throw new UserError(`${indexPath}: missing "weight_map"`);
      }
      const root = resolve(dir);
      for (const [name, shard] of Object.entries(index.weight_map)) {
        const p = resolve(root, shard);
        const rel = relative(root, p);
        if (typeof shard !== 'string' || isAbsolute(shard) || rel.startsWith('..') || isAbsolute(rel)) {
          throw new UserError(`${indexPath}: shard path "${shard}" for "${name}" leaves the model directory`);
        }
        if (!files.has(shard)) {
          if (!existsSync(p)) throw new UserError(`${indexPath}: shard "${shard}" listed for "${name}" is missing from ${dir}`);
          files.set(shard, new SafetensorsFile(p));
        }
        const f = files.get(shard)!;
        if (!f.tensors.has(name)) throw new UserError(`${indexPath}: "${name}" is listed in ${shard} but that shard does not hold it`);
        owner.set(name, f);
      }
    } else if (existsSync(single)) {
      const f = new SafetensorsFile(single);
      files.set('model.safetensors', f);
      for (const name of f.tensors.keys()) owner.set(name, f);
    } else {
      throw new UserError(`${dir}: no model.safetensors or model.safetensors.index.json (is --model a Hugging Face model directory?)`);
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
