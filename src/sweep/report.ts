/**
 * What a sweep leaves behind: results.csv and results.json (every point's metrics map, with standard
 * errors and the paired test against the original), the charts (SVG and PNG: similarity, accuracy per
 * task with error bars, MMLU per category), summary.md that reads on its own, and run.json with
 * everything needed to repeat the run.
 */
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { atomicWriteText } from '../io/atomic.ts';
import type { MmluSummary } from '../eval/mmlu/results.ts';
import { getSimilarityMetric } from '../compress/similarity/index.ts';
import { accuracySpec, categoriesSpec, renderChart, similarityHeatmapSpec, sizeSpec } from '../report/charts.ts';
import type { SweepPoint } from './types.ts';
import { getTask, PAPER_MMLU } from '../eval/tasks/registry.ts';
import { averageMetric, headlineMetric } from './tasks.ts';
import { flag } from '../runtime/options.ts';
import { SWEEP_TEXT } from './options.ts';

/** The MMLU columns beside its accuracy: macro mean over subjects and the categories. */
const MMLU_EXTRA = ['mmlu_macro', 'stem', 'humanities', 'social_sciences', 'other'] as const;

/** Columns of one task metric: its value, standard error, difference from the original and the paired test's p. */
function metricColumns(task: string, metric: string): string[] {
  const base = task === PAPER_MMLU ? 'mmlu' : `${task}_${metric}`;
  return [base, `${base}_stderr`, `${base}_delta`, `${base}_p`];
}

/**
 * results.csv's columns for a sweep's tasks: the point (method, layers removed, layers, the share of layers
 * removed, the quantization, the model's bytes and the share of the original's 16-bit bytes saved), then per task each metric with its stderr, its
 * difference from the original and the p-value of the paired test (the paper's MMLU followed by its
 * macro mean and categories), the average of the tasks' headline metrics when there are several, the
 * MMLU question parts' perplexity (mmlu_ppl), the --text corpus's (text_ppl), MMLU agreement and KL, seconds.
 */
export function resultColumns(tasks: readonly string[]): string[] {
  const mmlu = tasks.includes(PAPER_MMLU);
  return [
    'method', 'layers_removed', 'layers', 'compression_ratio', 'quantize', 'bytes', 'byte_compression_ratio',
    ...tasks.flatMap((t) => (t === PAPER_MMLU ? [...metricColumns(t, 'acc'), ...MMLU_EXTRA] : getTask(t).metrics.flatMap((m) => metricColumns(t, m)))),
    ...(tasks.length > 1 ? ['average', 'average_stderr'] : []),
    ...(mmlu ? ['mmlu_ppl'] : []), 'text_ppl', ...(mmlu ? ['agreement', 'kl'] : []), 'seconds',
  ];
}

/** The columns of a sweep of the paper's MMLU alone. */
export const RESULT_COLUMNS = resultColumns([PAPER_MMLU]);

/** A point's value for each column. */
function csvRow(p: SweepPoint, base: SweepPoint, tasks: readonly string[]): Record<string, unknown> {
  // mmlu_ppl: the paper's perplexity of the MMLU question parts; text_ppl: perplexity on the --text corpus
  const row: Record<string, unknown> = { ...p, mmlu_ppl: p.perplexity, text_ppl: p.ppl };
  for (const t of tasks) {
    for (const m of t === PAPER_MMLU ? ['acc'] : getTask(t).metrics) {
      const [v, se, d, pv] = metricColumns(t, m);
      const x = p.metrics[t]?.[m];
      row[v] = x?.value ?? null;
      row[se] = x?.stderr ?? null;
      const b = base.metrics[t]?.[m];
      row[d] = x && b ? x.value - b.value : null;
      row[pv] = p.paired?.[t]?.[m]?.p ?? null;
    }
  }
  const avg = averageMetric(p.metrics, tasks);
  row.average = avg?.value ?? null;
  row.average_stderr = avg?.stderr ?? null;
  return row;
}

export interface SweepReportInput {
  out: string;
  /** The sweep's tasks, in order. */
  tasks: string[];
  base: SweepPoint;
  /** The original's MMLU summary (null without the mmlu task). */
  baseSummary: MmluSummary | null;
  points: SweepPoint[];
  /** analysis.json, checked (analysis-file.ts): the similarity heatmap's metric and matrix. */
  analysis: { metric: string; matrix: (number | null)[][] | null } | null;
  chosen?: string;
  pointSummary: (method: string, removed: number) => MmluSummary | null;
  run: Record<string, unknown>;
}

/** A point's line in charts: its method, and its quantization when it has one. */
const seriesName = (p: SweepPoint) => (p.quantize && p.quantize !== 'none' ? `${p.method} ${p.quantize}` : p.method);

const pct = (x: number | null) => (x === null ? '' : `${(100 * x).toFixed(2)}%`);

/** The point shown in categories.png: --chosen "method:k", else the largest MKA (or any) count. */
function chosenPoint(points: SweepPoint[], chosen?: string): SweepPoint | null {
  if (chosen) {
    const [m, k] = chosen.split(':');
    return points.find((p) => p.method === m && p.layers_removed === Number(k)) ?? null;
  }
  const removed = points.filter((p) => p.layers_removed > 0);
  const mka = removed.filter((p) => p.method === 'mka');
  const pool = mka.length ? mka : removed;
  return pool.sort((a, b) => b.layers_removed - a.layers_removed)[0] ?? null;
}

/** A task's name in tables and charts. */
function taskTitle(task: string): string {
  return task === PAPER_MMLU ? 'MMLU' : `${task} ${getTask(task).headline}`;
}

/** "97.04% ± 0.48" (the standard error in points), and " ≈" when the paired test cannot tell the point from the original. */
function cell(p: SweepPoint, task: string): string {
  const m = headlineMetric(task);
  const v = p.metrics[task]?.[m];
  if (!v) return '';
  const noise = p.paired?.[task]?.[m]?.withinNoise && p.paired[task][m].onlyBase + p.paired[task][m].onlyOther > 0;
  return `${pct(v.value)}${v.stderr === null ? '' : ` ± ${(100 * v.stderr).toFixed(2)}`}${noise ? ' ≈' : ''}`;
}

/** Writes every report file of a sweep. */
export async function writeSweepReport(r: SweepReportInput): Promise<void> {
  const rows = [{ ...r.base }, ...r.points];
  const columns = resultColumns(r.tasks);
  atomicWriteText(join(r.out, 'results.csv'), stringify(rows.map((p) => {
    const row = csvRow(p, r.base, r.tasks);
    return columns.map((c) => row[c] ?? '');
  }), { header: true, columns }));
  atomicWriteText(join(r.out, 'results.json'), JSON.stringify({ tasks: r.tasks, baseline: r.base, points: r.points }, null, 2) + '\n');

  const charts: string[] = [];
  if (r.analysis?.matrix) {
    const { metric, matrix } = r.analysis;
    const { scale } = getSimilarityMetric(metric);
    await renderChart(similarityHeatmapSpec(matrix, `Layer similarity (${metric.toUpperCase()})`, scale), join(r.out, 'similarity'));
    charts.push('similarity');
  }
  // accuracy.png: the first task; accuracy-<task>.png the others; accuracy-average.png their average
  const series: { file: string; title: string; value: (p: SweepPoint) => { value: number; stderr: number | null } | null; chance?: number }[] = [
    ...r.tasks.map((t, i) => ({
      file: i === 0 ? 'accuracy' : `accuracy-${t}`, title: taskTitle(t), value: (p: SweepPoint) => p.metrics[t]?.[headlineMetric(t)] ?? null,
      chance: t === PAPER_MMLU || t === 'mmlu_lmeval' ? 0.25 : undefined,
    })),
    ...(r.tasks.length > 1 ? [{ file: 'accuracy-average', title: 'average', value: (p: SweepPoint) => averageMetric(p.metrics, r.tasks) }] : []),
  ];
  for (const sr of series) {
    const base = sr.value(r.base);
    if (!base) continue;
    const points = r.points.flatMap((p) => {
      const v = sr.value(p);
      return v ? [{ method: seriesName(p), layersRemoved: p.layers_removed, ratio: p.compression_ratio, accuracy: v.value, stderr: v.stderr ?? undefined }] : [];
    });
    await renderChart(accuracySpec(points, base.value, sr.chance, `${sr.title} against compression`), join(r.out, sr.file));
    charts.push(sr.file);
  }
  // accuracy-size.png: the first task's headline against the model's bytes (layers removed and bits together), one line per method and quantization
  const headline = series[0];
  if (headline && headline.value(r.base)) {
    const sizeRows = r.points.flatMap((p) => {
      const v = headline.value(p);
      return v ? [{ series: p.method, quantize: p.quantize ?? 'none', label: String(p.layers_removed), bytes: p.bytes, accuracy: v.value, stderr: v.stderr ?? 0 }] : [];
    });
    if (sizeRows.length && sizeRows.every((x) => Number.isFinite(x.bytes))) {
      await renderChart(sizeSpec(sizeRows, `${headline.title} against model size (labels: layers removed)`), join(r.out, 'accuracy-size'));
      charts.push('accuracy-size');
    }
  }
  const pick = chosenPoint(r.points.filter((p) => (p.quantize ?? 'none') === 'none'), r.chosen);
  const pickSummary = pick ? r.pointSummary(pick.method, pick.layers_removed) : null;
  if (pick && pickSummary && r.baseSummary) {
    const setting = `${pick.method} −${pick.layers_removed} layers`;
    // A benchmark whose subjects all fall in one category (a custom one, such as the demo's) is shown per subject.
    const by = r.baseSummary.categories.length > 1 ? 'categories' : 'subjects';
    await renderChart(categoriesSpec([
      ...r.baseSummary[by].map((c) => ({ category: c.name, setting: 'original', accuracy: c.accuracy })),
      ...pickSummary[by].map((c) => ({ category: c.name, setting, accuracy: c.accuracy })),
    ], `MMLU accuracy per ${by === 'categories' ? 'category' : 'subject'}`), join(r.out, 'categories'));
    charts.push('categories');
  }
  atomicWriteText(join(r.out, 'run.json'), JSON.stringify(r.run, null, 2) + '\n');

  const mmlu = r.tasks.includes(PAPER_MMLU);
  // Category columns only where some point has questions in them (a custom benchmark may fill one).
  const categoryColumns = !mmlu ? [] : ([['STEM', 'stem'], ['humanities', 'humanities'], ['social sci.', 'social_sciences'], ['other', 'other']] as const)
    .filter(([, key]) => rows.some((p) => p[key] !== null && p[key] !== undefined));
  const textPpl = rows.some((p) => p.ppl !== null && p.ppl !== undefined); // a text corpus was given
  const several = r.tasks.length > 1;
  const quantized = rows.some((p) => (p.quantize ?? 'none') !== 'none');
  const header = ['method', 'removed', 'layers', 'ratio', ...(quantized ? ['quantize'] : []), 'MB', 'size ratio', ...r.tasks.map(taskTitle), ...(several ? ['average'] : []), ...(mmlu ? ['macro', ...categoryColumns.map(([title]) => title), 'answer ppl'] : []),
    ...(textPpl ? ['text ppl'] : []), ...(mmlu ? ['agreement'] : [])];
  const avgCell = (p: SweepPoint) => {
    const a = averageMetric(p.metrics, r.tasks);
    return a ? `${pct(a.value)}${a.stderr === null ? '' : ` ± ${(100 * a.stderr).toFixed(2)}`}` : '';
  };
  const table = [
    `| ${header.join(' | ')} |`,
    `|---|${header.slice(1).map(() => '---:').join('|')}|`,
    ...rows.map((p) => `| ${[p.method, p.layers_removed, p.layers, `${(100 * p.compression_ratio).toFixed(1)}%`, ...(quantized ? [p.quantize ?? 'none'] : []),
      Number.isFinite(p.bytes) ? (p.bytes / 1e6).toFixed(3) : '', Number.isFinite(p.byte_compression_ratio) ? `${(100 * p.byte_compression_ratio).toFixed(1)}%` : '', ...r.tasks.map((t) => cell(p, t)), ...(several ? [avgCell(p)] : []),
      ...(mmlu ? [pct(p.mmlu_macro), ...categoryColumns.map(([, key]) => pct(p[key])), p.perplexity?.toFixed(2) ?? ''] : []),
      ...(textPpl ? [p.ppl?.toFixed(2) ?? ''] : []), ...(mmlu ? [pct(p.agreement)] : [])].join(' | ')} |`),
  ].join('\n');
  const score = (p: SweepPoint) => (several ? averageMetric(p.metrics, r.tasks)?.value : p.metrics[r.tasks[0]]?.[headlineMetric(r.tasks[0])]?.value) ?? -Infinity;
  const what = several ? 'the average' : taskTitle(r.tasks[0]);
  // the best method per count (and per quantization, on a quantize axis)
  const best = new Map<string, SweepPoint>();
  const bestKey = (p: SweepPoint) => `${p.layers_removed}\0${p.quantize ?? 'none'}`;
  for (const p of r.points) if (p.layers_removed > 0 && (!best.has(bestKey(p)) || score(best.get(bestKey(p))!) < score(p))) best.set(bestKey(p), p);
  const lines = [
    `# Sweep: ${String((r.run.options as { model?: string })?.model ?? '')}`, '',
    `Uncompressed: ${several ? r.tasks.map((t) => `${taskTitle(t)} ${pct(r.base.metrics[t]?.[headlineMetric(t)]?.value ?? null)}`).join(', ') : `${what} ${pct(score(r.base))}`} with ${r.base.layers} layers.${r.run.compute ? ` Products computed in ${String(r.run.compute)}.` : ''}`,
    ...[...best.values()].sort((a, b) => a.layers_removed - b.layers_removed || (a.quantize === 'none' ? -1 : b.quantize === 'none' ? 1 : 0)).map((p) => {
      const k = p.layers_removed;
      const q = (p.quantize ?? 'none') === 'none' ? '' : ` quantized by \`${p.quantize}\``;
      return `Removing ${k} layer${k > 1 ? 's' : ''}${q}: best is **${p.method}** on ${what} at ${pct(score(p))} (${((score(p) - score(r.base)) * 100).toFixed(2)} points, ${(100 * p.byte_compression_ratio).toFixed(1)}% of the bytes saved).`;
    }),
    '', table, '',
    '*ratio*: share of the layers removed; *MB* and *size ratio*: the model\'s bytes (float weights at 16 bits, packed weights as stored) and the share of the original\'s 16-bit bytes saved, layers and bits together.', '',
    '± is the standard error (lm-eval\'s: sample standard deviation over √n). ≈ marks a point that an exact McNemar test on the same '
      + 'documents cannot tell from the original (p ≥ 0.05): its difference is within noise. results.csv has each difference and p-value.', '',
    ...(mmlu || textPpl ? [[
      ...(mmlu ? ['*answer ppl*: MMLU answer perplexity (exp of the mean loss of each question\'s answer tokens, the paper\'s; `mmlu_ppl` in results.csv)'] : []),
      ...(textPpl ? [`*text ppl*: perplexity on the ${flag(SWEEP_TEXT)} corpus (strided windows, as \`mka eval ppl\`; \`text_ppl\` in results.csv)`] : []),
    ].join('; ') + '.', ''] : []),
    ...charts.map((c) => `![${c}](${c}.png)\n`),
    'Files: `results.csv` / `results.json` (every point), `run.json` (options, versions, backend, timings), SVG versions of each chart.', '',
  ];
  atomicWriteText(join(r.out, 'summary.md'), lines.join('\n'));
}
