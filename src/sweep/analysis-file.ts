/**
 * A sweep's analysis.json (written by calibrate.ts: the similarity report of `mka similarity` with the
 * calibration's samples and block influence), read back to plan points added later and to draw the
 * report's similarity heatmap. Checked when read (src/io/schema.ts): a file a newer or older mka wrote
 * without a field is read as lacking it (its points are planned by a calibration pass), a field of the
 * wrong kind (a hand edit, a truncated write) is a one-line UserError naming the file and the fix.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { array, checked, integer, nullable, number, object, optional, readChecked, string } from '../io/schema.ts';
import { DEFAULT_METRIC } from '../compress/similarity/index.ts';
import type { StoredAnalysis } from '../pipeline/plan-targets.ts';
import { UserError } from '../runtime/errors.ts';

/** OUT/analysis.json. */
export function analysisFile(out: string): string {
  return join(out, 'analysis.json');
}

const WHAT = 'sweep analysis';
const FIX = 'delete it and run the sweep again to recompute it';

/** The fields read back; the metric's matrix is under the metric's name (npib in files from before --metric). */
const ANALYSIS = object({ metric: optional(string), samples: optional(integer), block_influence: optional(array(number)) });
const MATRIX = array(array(nullable(number)));

/**
 * The analysis of the sweep in `out` (checked), or null when it has none: its metric and matrix, and what
 * planning reads. `layers` (the model's decoder layers) refuses a matrix or block influence of another size.
 */
export function readAnalysis(out: string, layers?: number): { metric: string; matrix: (number | null)[][] | null; planning: StoredAnalysis | null } | null {
  const path = analysisFile(out);
  if (!existsSync(path)) return null;
  const a = readChecked(path, ANALYSIS, WHAT, FIX);
  const metric = a.metric ?? DEFAULT_METRIC;
  const matrix = a[metric] === undefined ? null : checked(a[metric], (v, at) => MATRIX(v, at || metric), path, WHAT, FIX);
  if (layers !== undefined) {
    // planning indexes them by layer: another size (an edited file) would plan from missing entries
    const wrongMatrix = matrix && (matrix.length !== layers || matrix.some((r) => r.length !== layers));
    const wrongInfluence = a.block_influence && a.block_influence.length !== layers;
    if (wrongMatrix || wrongInfluence) {
      throw new UserError(`${path}: not an analysis of this sweep's ${layers}-layer model (${wrongMatrix ? `its ${metric} matrix has ${matrix!.length} rows of ${matrix!.map((r) => r.length).join('/').slice(0, 40)}` : `block_influence has ${a.block_influence!.length} entries`}); ${FIX}`);
    }
  }
  const planning = matrix && a.samples !== undefined && a.block_influence ? { samples: a.samples, metric, matrix, blockInfluence: a.block_influence } : null;
  return { metric, matrix, planning };
}
