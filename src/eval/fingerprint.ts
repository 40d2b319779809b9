/**
 * What identifies a model in a results directory's run key, so that results are reused only for the
 * same weights: config.json and every byte of a model directory's weight files (src/io/fingerprint.ts),
 * every byte of a GGUF model file, or the values of an in-memory model's tensors.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileSha256 } from '../io/fingerprint.ts';
import { readHfWeight, type LlamaModel } from '../model/model.ts';
import { isGgufFile } from '../model/files.ts';

/**
 * Identifies a model's weights: for a model directory, config.json and its weight files; for a GGUF
 * file, the file; for a model held only in memory, the values of its tensors.
 */
export function modelFingerprint(model: LlamaModel): string {
  const h = createHash('sha256').update(JSON.stringify(model.config));
  if (model.dir !== null && isGgufFile(model.dir)) {
    h.update(fileSha256(model.dir));
  } else if (model.dir !== null && existsSync(join(model.dir, 'config.json'))) {
    for (const f of readdirSync(model.dir).filter((f) => f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')).sort()) {
      h.update(f).update(fileSha256(join(model.dir, f)));
    }
  } else {
    for (const name of [...model.tensors.keys(), ...(model.packed?.keys() ?? [])].sort()) {
      const data = readHfWeight(model, name);
      h.update(name).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
  }
  return h.digest('hex').slice(0, 32);
}
