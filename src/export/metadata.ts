/**
 * What an exported model records about itself: where it came from, what was merged or pruned and
 * how (the merge command's merge.json), and which mka wrote it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { mkaVersion } from '../runtime/version.ts';

/** DIR/merge.json parsed, or null when the model was not produced by a merge. */
function readMergeRecord(dir: string): unknown {
  const file = join(dir, 'merge.json');
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message}); fix or remove it`);
  }
}

export interface ExportMetadata {
  source_model: string;
  mka_version: string;
  merge: unknown;
  quantization: string;
  exported_at: string;
  [key: string]: unknown;
}

/** The userDefinedMetadata of an export of the model in `dir` (null for a model built in memory). */
export function exportMetadata(dir: string | null, quantization: string, extra: Record<string, unknown> = {}): ExportMetadata {
  return {
    source_model: dir ?? 'in-memory model',
    mka_version: mkaVersion(),
    merge: dir ? readMergeRecord(dir) : null,
    quantization,
    exported_at: new Date().toISOString(),
    ...extra,
  };
}
