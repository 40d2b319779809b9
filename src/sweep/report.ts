/**
 * What a sweep leaves behind: results.csv and results.json, the three charts (SVG and PNG),
 * summary.md that reads on its own, and run.json with everything needed to repeat the run.
 */
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { atomicWriteText } from '../io/atomic.ts';
import type { MmluSummary } from '../eval/mmlu/results.ts';
import { DEFAULT_METRIC, getSimilarityMetric } from '../compress/similarity/index.ts';
import { accuracySpec, categoriesSpec, renderChart, similarityHeatmapSpec } from '../report/charts.ts';
import type { SweepPoint } from './sweep.ts';
import { flag } from '../runtime/options.ts';
import { SWEEP_TEXT } from './options.ts';

export const RESULT_COLUMNS: (keyof SweepPoint)[] = [
  'method', 'layers_removed', 'layers', 'compression_ratio', 'mmlu', 'mmlu_macro', 'stem', 'humanities',
  'social_sciences', 'other', 'perplexity', 'ppl', 'agreement', 'kl', 'seconds',
];

export interface SweepReportInput {
  out: string;
  base: SweepPoint;
  baseSummary: MmluSummary;
  points: SweepPoint[];
  analysis: Record<string, unknown> | null;
  chosen?: string;
  pointSummary: (method: string, removed: number) => MmluSummary | null;
  run: Record<string, unknown>;
}

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

/** Writes every report file of a sweep. */
export async function writeSweepReport(r: SweepReportInput): Promise<void> {
  const rows = [{ ...r.base }, ...r.points];
  atomicWriteText(join(r.out, 'results.csv'), stringify(rows.map((p) => RESULT_COLUMNS.map((c) => p[c] ?? '')), { header: true, columns: RESULT_COLUMNS as string[] }));
  atomicWriteText(join(r.out, 'results.json'), JSON.stringify({ baseline: r.base, points: r.points }, null, 2) + '\n');

  const charts: string[] = [];
  const metric = typeof r.analysis?.metric === 'string' ? r.analysis.metric : DEFAULT_METRIC; // an analysis.json from before --metric: NPIB
  if (r.analysis?.[metric]) {
    const { scale } = getSimilarityMetric(metric);
    await renderChart(similarityHeatmapSpec(r.analysis[metric] as (number | null)[][], `Layer similarity (${metric.toUpperCase()})`, scale), join(r.out, 'similarity'));
    charts.push('similarity');
  }
  await renderChart(accuracySpec(r.points.map((p) => ({ method: p.method, layersRemoved: p.layers_removed, ratio: p.compression_ratio, accuracy: p.mmlu })), r.base.mmlu, 0.25), join(r.out, 'accuracy'));
  charts.push('accuracy');
  const pick = chosenPoint(r.points, r.chosen);
  const pickSummary = pick ? r.pointSummary(pick.method, pick.layers_removed) : null;
  if (pick && pickSummary) {
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

  // Category columns only where some point has questions in them (a custom benchmark may fill one).
  const categoryColumns = ([['STEM', 'stem'], ['humanities', 'humanities'], ['social sci.', 'social_sciences'], ['other', 'other']] as const)
    .filter(([, key]) => rows.some((p) => p[key] !== null && p[key] !== undefined));
  const textPpl = rows.some((p) => p.ppl !== null && p.ppl !== undefined); // a text corpus was given
  const header = ['method', 'removed', 'layers', 'ratio', 'MMLU', 'macro', ...categoryColumns.map(([title]) => title), 'answer ppl', ...(textPpl ? ['text ppl'] : []), 'agreement'];
  const table = [
    `| ${header.join(' | ')} |`,
    `|---|${header.slice(1).map(() => '---:').join('|')}|`,
    ...rows.map((p) => `| ${[p.method, p.layers_removed, p.layers, `${(100 * p.compression_ratio).toFixed(1)}%`, pct(p.mmlu), pct(p.mmlu_macro),
      ...categoryColumns.map(([, key]) => pct(p[key])), p.perplexity.toFixed(2), ...(textPpl ? [p.ppl?.toFixed(2) ?? ''] : []), pct(p.agreement)].join(' | ')} |`),
  ].join('\n');
  const best = new Map<number, SweepPoint>();
  for (const p of r.points) if (p.layers_removed > 0 && (!best.has(p.layers_removed) || best.get(p.layers_removed)!.mmlu < p.mmlu)) best.set(p.layers_removed, p);
  const lines = [
    `# Sweep: ${String((r.run.options as { model?: string })?.model ?? '')}`, '',
    `Uncompressed: MMLU ${pct(r.base.mmlu)} with ${r.base.layers} layers.${r.run.compute ? ` Products computed in ${String(r.run.compute)}.` : ''}`,
    ...[...best].sort((a, b) => a[0] - b[0]).map(([k, p]) => `Removing ${k} layer${k > 1 ? 's' : ''}: best is **${p.method}** at ${pct(p.mmlu)} (${((p.mmlu - r.base.mmlu) * 100).toFixed(2)} points).`),
    '', table, '',
    `*answer ppl*: MMLU answer perplexity (exp of the mean loss of each question's answer tokens, the paper's; \`perplexity\` in results.csv)${textPpl ? `; *text ppl*: perplexity on the ${flag(SWEEP_TEXT)} corpus (strided windows, as \`mka eval ppl\`; \`ppl\` in results.csv)` : ''}.`, '',
    ...charts.map((c) => `![${c}](${c}.png)\n`),
    'Files: `results.csv` / `results.json` (every point), `run.json` (options, versions, backend, timings), SVG versions of each chart.', '',
  ];
  atomicWriteText(join(r.out, 'summary.md'), lines.join('\n'));
}
