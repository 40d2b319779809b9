/**
 * What identifies a model in a results directory's run key, so that results are reused only for the
 * same weights: config.json and the weight files of a model directory (size, first and last MiB of
 * each), or the values of an in-memory model's tensors.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readHfWeight, type LlamaModel } from '../model/model.ts';

const HASH_BYTES = 1 << 20;

/** sha256 of a file's size, first and last MiB (enough to tell weight files apart without reading GBs). */
function fileFingerprint(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const h = createHash('sha256').update(String(size));
    const head = Buffer.alloc(Math.min(size, HASH_BYTES));
    readSync(fd, head, 0, head.length, 0);
    h.update(head);
    if (size > HASH_BYTES) {
      const tail = Buffer.alloc(Math.min(size - HASH_BYTES, HASH_BYTES));
      readSync(fd, tail, 0, tail.length, size - tail.length);
      h.update(tail);
    }
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/**
 * Identifies a model's weights: for a model directory, config.json and its weight files; for a model
 * held only in memory, the values of its tensors.
 */
export function modelFingerprint(model: LlamaModel): string {
  const h = createHash('sha256').update(JSON.stringify(model.config));
  if (model.dir !== null && existsSync(join(model.dir, 'config.json'))) {
    for (const f of readdirSync(model.dir).filter((f) => f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')).sort()) {
      h.update(f).update(fileFingerprint(join(model.dir, f)));
    }
  } else {
    for (const name of [...model.tensors.keys(), ...(model.packed?.keys() ?? [])].sort()) {
      const data = readHfWeight(model, name);
      h.update(name).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  }
  return h.digest('hex').slice(0, 32);
}
