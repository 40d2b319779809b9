/**
 * The sweep's report from what is on disk: the rows of every finished point in points/, the
 * similarity in analysis.json, and the report files written from them (report.ts). Used at the end
 * of a local or queued sweep, and by `mka sweep --report` after points were run separately.
 */
import { tf } from '../runtime/tf.ts';
import { currentProfile } from '../runtime/profile.ts';
import { UserError } from '../runtime/errors.ts';
import { mkaVersion } from '../runtime/version.ts';
import { writeSweepReport } from './report.ts';
import { readAnalysis } from './analysis-file.ts';
import { ORIGINAL, pointLabel, sweepPoints, withQuantize } from './points.ts';
import { readStoredPoint, rowOf, type StoredPoint } from './point.ts';
import { readConfig } from '../model/config.ts';
import type { SweepOptions, SweepPoint } from './types.ts';
import { headlineMetric, pairedTests, sweepTasks } from './tasks.ts';
import { PAPER_MMLU } from '../eval/tasks/registry.ts';
import { flag, valueOf } from '../runtime/options.ts';
import { CALIBRATION_SEED } from '../compress/options.ts';
import { POINT, REPORT } from './options.ts';

/** Points of the sweep without a result in points/ yet. */
export function missingPoints(opts: SweepOptions): string[] {
  return sweepPoints(opts.methods, opts.remove, opts.quantize).filter((p) => !readStoredPoint(opts.out, p)).map(pointLabel);
}

/**
 * Writes results.csv/json, the charts, summary.md and run.json from the finished points; refuses
 * (naming them) when points are missing. Returns the rows, method by method in --remove order.
 */
export async function assembleSweepReport(opts: SweepOptions, run: { seconds?: Record<string, number>; compute?: string } = {}): Promise<SweepPoint[]> {
  const missing = missingPoints(opts);
  if (missing.length) {
    throw new UserError(`${opts.out}: ${missing.length} point${missing.length > 1 ? 's are' : ' is'} not finished (${missing.join(', ')}); run them with ${flag(POINT)}, or the whole sweep without ${flag(REPORT)}`);
  }
  const config = readConfig(opts.model);
  const base = readStoredPoint(opts.out, ORIGINAL)!;
  const tasks = sweepTasks(opts);
  const log = opts.log ?? (() => {});
  const describe = (p: SweepPoint) => tasks.map((t) => {
    const v = p.metrics[t]?.[headlineMetric(t)];
    return `${t === PAPER_MMLU ? 'MMLU' : t} ${v ? `${(100 * v.value).toFixed(2)}%` : '?'}`;
  }).join(', ');
  log(`original: ${describe(rowOf(base, config))} (${base.layers} layers)`);
  const points: SweepPoint[] = [];
  for (const q of opts.quantize ?? ['none']) {
    // the original under this quantization: the starting point of each method's line
    const start = q === 'none' ? base : readStoredPoint(opts.out, withQuantize(ORIGINAL, q))!;
    const paired = (s: StoredPoint) => (s !== base && base.documents && s.documents ? pairedTests(base.documents, s.documents) : null);
    for (const method of opts.methods) {
      for (const removed of opts.remove) {
        const stored = removed === 0 ? start : readStoredPoint(opts.out, withQuantize({ method, removed }, q))!;
        const point = { ...rowOf(stored, config), ...(removed === 0 ? { method, seconds: q === 'none' ? 0 : stored.seconds } : {}), paired: paired(stored) };
        log(`${method} -${removed}${q === 'none' ? '' : ` ${q}`}: ${describe(point)}`);
        points.push(point);
      }
    }
  }
  const analysis = readAnalysis(opts.out);
  await writeSweepReport({
    out: opts.out, tasks, base: rowOf(base, config), baseSummary: base.summary, points, analysis, chosen: opts.chosen,
    pointSummary: (method, removed) => (removed === 0 ? base.summary : readStoredPoint(opts.out, { method, removed })?.summary ?? null),
    run: {
      command: 'sweep', options: { ...opts, log: undefined, signal: undefined }, versions: { mka: mkaVersion(), tfjs: tf.version_core, node: process.version },
      backend: currentProfile().backend, ...(run.compute ? { compute: run.compute } : {}), seed: valueOf(CALIBRATION_SEED, opts), seconds: run.seconds ?? {}, ...opts.runInfo,
    },
  });
  return points;
}
