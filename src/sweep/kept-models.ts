/**
 * `sweep --keep-models`: each computed point's model directory, models/NAME. It is written as every
 * model directory is (weights/hf-writer.ts: built in a temporary sibling `.NAME.tmp-PID-*`, marked as
 * mka's, renamed into place when complete), so models/NAME is whole whenever it exists, and what a
 * killed run leaves is its temporary sibling, which the next local run of the sweep removes. A run
 * writes models/NAME unless it holds this point's model already; it rewrites a model directory of
 * mka's that is another (a point stored by an older version, or an unreadable one), and refuses to
 * replace a directory mka did not write.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { MARKER_FILE, isOwnOutput } from '../io/output-dir.ts';
import type { Quantization } from '../quant/registry.ts';
import type { CompressionPlan } from '../compress/merge-plan.ts';
import { planSummary, readMergeRecord } from '../compress/plan-file.ts';
import { readConfig, type LlamaConfig } from '../model/config.ts';
import { pointName, type PointId } from './points.ts';
import { KEEP_MODELS } from './options.ts';
import { flag } from '../runtime/options.ts';

/** Where a point's model is kept. */
export function keptModelDir(out: string, p: PointId): string {
  return join(out, 'models', pointName(p));
}

/**
 * Whether `dir` holds the point's model: config.json's layer count and quantization (none, or the same
 * method, grid, embedding bits and parameters), and with a `plan` merge.json's method and layer sources.
 */
function holdsPoint(dir: string, layers: number, q: Quantization | null, plan?: CompressionPlan | null): boolean {
  let config: LlamaConfig, record: Record<string, unknown> | null;
  try { // read as every command reads them; an unreadable file is mka's to rewrite
    config = readConfig(dir);
    record = plan ? readMergeRecord(dir) : null;
  } catch (e) {
    if (e instanceof UserError) return false;
    throw e;
  }
  if (plan) {
    const expected = planSummary(plan);
    if (!record || record.method !== expected.method || JSON.stringify(record.layer_sources) !== JSON.stringify(expected.layer_sources)) return false;
  }
  if (config.num_hidden_layers !== layers) return false;
  const qc = (config.quantization_config ?? null) as Record<string, unknown> | null;
  if (!q || !qc) return !q && !qc;
  const tables = (qc.tables ?? {}) as Record<string, { bits?: number }>;
  return qc.method === q.method && qc.bits === q.grid.bits && qc.group_size === (q.grid.group === 'channel' ? -1 : q.grid.group) && qc.sym === q.grid.symmetric
    && tables['model.embed_tokens.weight']?.bits === q.embeddingBits && JSON.stringify(qc.params) === JSON.stringify(q.params);
}

/**
 * Whether point p's model must be written to models/NAME (`layers`: the point's decoder layers, `q` its
 * quantization, `plan` its merge when known): true when the directory is absent or empty or holds another
 * model mka wrote, false when it holds this point's. Throws a one-line UserError when something mka did not
 * write is there.
 */
export function keptModelNeeded(out: string, p: PointId, layers: number, q: Quantization | null, plan?: CompressionPlan | null): boolean {
  const dir = keptModelDir(out, p);
  if (!existsSync(dir)) return true;
  if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: is a file, where ${flag(KEEP_MODELS)} writes the model of point ${pointName(p)}; move it away and rerun`);
  if (readdirSync(dir).length === 0) return true;
  if (!isOwnOutput(dir, 'hf-model')) {
    throw new UserError(`${dir}: holds files mka did not write (no ${MARKER_FILE} of a model directory), where ${flag(KEEP_MODELS)} writes the model of point ${pointName(p)}; move that directory away and rerun`);
  }
  return !holdsPoint(dir, layers, q, plan);
}
