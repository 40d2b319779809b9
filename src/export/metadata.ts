/**
 * What an exported model records about itself: where it came from, what was merged or pruned and
 * how (the merge.json of mka compress, checked: compress/plan-file.ts), and which mka wrote it.
 */
import { mkaVersion } from '../runtime/version.ts';
import { readMergeRecord } from '../compress/plan-file.ts';

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
