/**
 * The experiment's pictures: vega-lite specs for the layer-similarity heatmap, the accuracy-vs-compression
 * plot and the per-category bars, and `renderChart`, which turns a spec into an SVG (vega, headless) and a
 * PNG at twice the size (resvg) with a white background.
 */
import { existsSync } from 'node:fs';
import { Resvg, type ResvgRenderOptions } from '@resvg/resvg-js';
import { parse as parseVega, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { atomicWriteFile, atomicWriteText, writeAll } from '../io/atomic.ts';

/** Font settings shared by every chart; the family is only a preference, resvg gets its own files. */
const CHART_CONFIG = {
  font: 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif',
  title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555', anchor: 'start' as const, offset: 10 },
  axis: { labelFontSize: 11, titleFontSize: 12, titlePadding: 8, gridColor: '#e6e6e6' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  view: { stroke: null },
};

/** Cells are labelled with their value only up to this many layers (beyond that the text is unreadable). */
const MAX_LABELLED_LAYERS = 16;

/** What a similarity heatmap's colours are (the metric's own words, similarity/registry.ts): the legend's title and the caption lines under the title. */
export interface HeatmapScale {
  legend: string;
  caption: string[];
}

/**
 * Heatmap of the layers' pairwise similarity (`matrix[i][j]`, L × L) in `scale`'s terms. Null or
 * non-finite cells (pairs not computed) are drawn grey and explained in the subtitle; values are
 * printed in the cells when L ≤ 16. The subtitle says what the colour scale is.
 */
export function similarityHeatmapSpec(matrix: (number | null)[][], title: string, scale: HeatmapScale): TopLevelSpec {
  const L = matrix.length;
  if (L === 0 || matrix.some((row) => row.length !== L)) {
    throw new Error(`similarityHeatmapSpec: expected a square L × L matrix, got ${L} rows of lengths ${matrix.map((r) => r.length).join(',')}`);
  }
  const cells = matrix.flatMap((row, i) => row.map((v, j) => ({ row: i, col: j, v: v !== null && Number.isFinite(v) ? v : null })));
  const finite = cells.flatMap((c) => (c.v === null ? [] : [c.v]));
  const hasNull = finite.length < cells.length;
  const mid = finite.length ? (Math.min(...finite) + Math.max(...finite)) / 2 : 0;
  const size = Math.min(480, Math.max(240, L * 30));
  const axis = { labelAngle: 0, labelOverlap: true as const };
  const layers: object[] = [
    {
      transform: [{ filter: 'datum.v === null' }],
      mark: { type: 'rect', color: '#d0d0d0' },
      encoding: {},
    },
    {
      transform: [{ filter: 'datum.v !== null' }],
      mark: 'rect',
      encoding: {
        color: {
          field: 'v', type: 'quantitative', title: scale.legend,
          scale: { scheme: 'viridis' }, legend: { gradientLength: Math.min(size, 240), format: '.2f' },
        },
      },
    },
  ];
  if (L <= MAX_LABELLED_LAYERS) {
    layers.push({
      transform: [{ filter: 'datum.v !== null' }],
      mark: { type: 'text', fontSize: L <= 8 ? 12 : 9 },
      encoding: {
        text: { field: 'v', type: 'quantitative', format: '.2f' },
        color: { condition: { test: `datum.v < ${mid}`, value: 'white' }, value: 'black' },
      },
    });
  }
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: title,
      subtitle: [
        ...scale.caption,
        ...(hasNull ? ['grey cells: no value computed'] : []),
      ],
    },
    background: 'white',
    padding: 12,
    config: CHART_CONFIG,
    width: size,
    height: size,
    data: { values: cells },
    encoding: {
      x: { field: 'col', type: 'ordinal', title: 'layer', axis: { ...axis, orient: 'bottom' } },
      y: { field: 'row', type: 'ordinal', title: 'layer', axis },
    },
    layer: layers,
  } as TopLevelSpec;
}

/** One evaluated point of the sweep: `ratio` is the fraction of layers removed, `accuracy` a fraction, `stderr` its standard error. */
export interface AccuracyRow { method: string; layersRemoved: number; ratio: number; accuracy: number; stderr?: number }

/**
 * Accuracy against compression ratio (x: percent of layers removed), one line with points per method,
 * error bars of ±1.96 standard errors (a 95% interval) where rows carry one, a labelled solid rule at
 * the uncompressed model's accuracy and, if given, a dashed rule at chance. Accuracies and ratios are
 * fractions in [0, 1].
 */
export function accuracySpec(rows: AccuracyRow[], baseline: number, chance?: number, title = 'MMLU accuracy against compression'): TopLevelSpec {
  const bars = rows.filter((r) => r.stderr !== undefined && r.stderr > 0)
    .map((r) => ({ ...r, lo: Math.max(0, r.accuracy - 1.96 * r.stderr!), hi: Math.min(1, r.accuracy + 1.96 * r.stderr!) }));
  const methods = [...new Set(rows.map((r) => r.method))];
  // enough decimals that neighbouring ticks differ when the accuracies span only a point or two
  const ys = [...rows.map((r) => r.accuracy), ...bars.flatMap((b) => [b.lo, b.hi]), baseline, ...(chance === undefined ? [] : [chance])];
  const span = Math.max(...ys) - Math.min(...ys);
  const yFormat = span >= 0.05 ? '.0%' : span >= 0.005 ? '.1%' : '.2%';
  const rule = (value: number, label: string, dashed: boolean) => ({
    data: { values: [{ y: value, label }] },
    layer: [
      {
        mark: { type: 'rule', color: dashed ? '#888' : '#222', strokeWidth: 1.5, ...(dashed ? { strokeDash: [6, 4] } : {}) },
        encoding: { y: { field: 'y', type: 'quantitative' } },
      },
      {
        mark: { type: 'text', align: 'right', baseline: 'bottom', dy: -3, x: { expr: 'width - 4' }, fontSize: 11, color: dashed ? '#666' : '#222' },
        encoding: { y: { field: 'y', type: 'quantitative' }, text: { field: 'label' } },
      },
    ],
  });
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: bars.length ? { text: title, subtitle: 'error bars: 95% interval (±1.96 standard errors)' } : title,
    background: 'white',
    padding: 12,
    config: CHART_CONFIG,
    width: 440,
    height: 300,
    layer: [
      ...(bars.length ? [{
        data: { values: bars },
        mark: { type: 'rule', strokeWidth: 1.2, opacity: 0.6 },
        encoding: {
          x: { field: 'ratio', type: 'quantitative' },
          y: { field: 'lo', type: 'quantitative' },
          y2: { field: 'hi' },
          color: { field: 'method', type: 'nominal', scale: { domain: methods } },
        },
      }] : []),
      {
        data: { values: rows },
        mark: { type: 'line', point: { size: 50, filled: true }, strokeWidth: 2 },
        encoding: {
          x: {
            field: 'ratio', type: 'quantitative', title: 'layers removed (% of model)',
            axis: { format: '.0%' }, scale: { zero: true, nice: true },
          },
          y: { field: 'accuracy', type: 'quantitative', title: 'accuracy', axis: { format: yFormat }, scale: { zero: false, nice: true } },
          color: { field: 'method', type: 'nominal', title: 'method', scale: { domain: methods } },
          order: { field: 'ratio', type: 'quantitative' },
          tooltip: [{ field: 'method' }, { field: 'layersRemoved', title: 'layers removed' }, { field: 'accuracy', format: '.1%' }],
        },
      },
      rule(baseline, `uncompressed ${pct(baseline)}`, false),
      ...(chance === undefined ? [] : [rule(chance, `chance ${pct(chance)}`, true)]),
    ],
  } as TopLevelSpec;
}

/** One model in a size chart: its series (a method), quantization, bytes, accuracy and standard error (fractions). */
export interface SizeRow { series: string; quantize: string; label: string; bytes: number; accuracy: number; stderr: number }

/**
 * Accuracy against model size (x: MB, log scale), one line per (series, quantization) through its
 * points in order of size, with ±1 standard error bars and each point's label (the layers removed) beside it:
 * the paper's "even greater compression" when merging is coupled with quantization.
 */
export function sizeSpec(rows: SizeRow[], title = 'MMLU accuracy against model size'): TopLevelSpec {
  const values = rows.map((r) => ({ ...r, mb: r.bytes / 1e6, lo: r.accuracy - r.stderr, hi: r.accuracy + r.stderr, line: `${r.series} ${r.quantize}` }));
  const span = Math.max(...values.map((v) => v.hi)) - Math.min(...values.map((v) => v.lo));
  const x = { field: 'mb', type: 'quantitative', title: 'model size (MB, 16-bit floats, packed weights as stored)', scale: { type: 'log' } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    background: 'white',
    padding: 12,
    config: CHART_CONFIG,
    width: 480,
    height: 320,
    data: { values },
    layer: [
      { mark: { type: 'rule', strokeWidth: 1.2 }, encoding: { x, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' }, color: { field: 'quantize', type: 'nominal', title: 'quantization' } } },
      {
        mark: { type: 'line', point: { size: 50, filled: true }, strokeWidth: 1.5 },
        encoding: {
          x,
          y: { field: 'accuracy', type: 'quantitative', title: 'accuracy', axis: { format: span >= 0.05 ? '.0%' : '.1%' }, scale: { zero: false, nice: true } },
          color: { field: 'quantize', type: 'nominal', title: 'quantization' },
          strokeDash: { field: 'series', type: 'nominal', title: 'method' },
          shape: { field: 'series', type: 'nominal', title: 'method' },
          detail: { field: 'line' },
          order: { field: 'mb', type: 'quantitative' },
          tooltip: [{ field: 'series' }, { field: 'quantize' }, { field: 'label', title: 'layers' }, { field: 'mb', format: '.3f' }, { field: 'accuracy', format: '.2%' }],
        },
      },
      { mark: { type: 'text', dx: 7, dy: -7, fontSize: 10, color: '#444' }, encoding: { x, y: { field: 'accuracy', type: 'quantitative' }, text: { field: 'label' } } },
    ],
  } as TopLevelSpec;
}

/** One bar: accuracy (a fraction) of one setting (e.g. 'original', 'mka −4 layers') on one category. */
export interface CategoryRow { category: string; setting: string; accuracy: number }

/**
 * Horizontal grouped bars: per category (or whatever groups the rows name, e.g. subjects, with `title`),
 * one bar per setting (settings keep their input order).
 */
export function categoriesSpec(rows: CategoryRow[], title = 'MMLU accuracy per category'): TopLevelSpec {
  const categories = [...new Set(rows.map((r) => r.category))];
  const settings = [...new Set(rows.map((r) => r.setting))];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle: 'before and after compression' },
    background: 'white',
    padding: 12,
    config: CHART_CONFIG,
    width: 440,
    height: { step: 20 }, // with yOffset the step is one bar's slot, not one category's
    data: { values: rows },
    encoding: {
      y: { field: 'category', type: 'nominal', title: null, sort: categories, axis: { labelLimit: 180 } },
      yOffset: { field: 'setting', type: 'nominal', sort: settings },
      x: { field: 'accuracy', type: 'quantitative', title: 'accuracy', axis: { format: '.0%' }, scale: { domain: [0, 1] } },
    },
    layer: [
      {
        mark: { type: 'bar', height: { band: 0.9 } },
        encoding: {
          color: { field: 'setting', type: 'nominal', title: null, scale: { domain: settings }, legend: { orient: 'bottom', direction: 'horizontal' } },
        },
      },
      {
        mark: { type: 'text', align: 'left', baseline: 'middle', dx: 3, fontSize: 10, color: '#333' },
        encoding: { text: { field: 'accuracy', type: 'quantitative', format: '.1%' } },
      },
    ],
  } as TopLevelSpec;
}

/** A sans-serif font file and its family name, as resvg needs them. */
export interface ChartFont { family: string; files: string[] }

/** Common places of a plain sans-serif font (Debian/Ubuntu, Fedora, Arch, macOS, Windows). */
const FONT_CANDIDATES: ChartFont[] = [
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf'] },
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/dejavu/DejaVuSans.ttf', '/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf'] },
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf', '/usr/share/fonts/dejavu-sans-fonts/DejaVuSans-Bold.ttf'] },
  { family: 'DejaVu Sans', files: ['/usr/share/fonts/TTF/DejaVuSans.ttf', '/usr/share/fonts/TTF/DejaVuSans-Bold.ttf'] },
  { family: 'Liberation Sans', files: ['/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf', '/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf'] },
  { family: 'Liberation Sans', files: ['/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf', '/usr/share/fonts/liberation-sans/LiberationSans-Bold.ttf'] },
  { family: 'Arial', files: ['/System/Library/Fonts/Supplemental/Arial.ttf', '/System/Library/Fonts/Supplemental/Arial Bold.ttf'] },
  { family: 'Arial', files: ['/Library/Fonts/Arial.ttf'] },
  { family: 'Arial', files: ['C:\\Windows\\Fonts\\arial.ttf', 'C:\\Windows\\Fonts\\arialbd.ttf'] },
];

/** The first known sans-serif font present on this machine (its existing files), or null. */
export function findChartFont(): ChartFont | null {
  for (const c of FONT_CANDIDATES) {
    const files = c.files.filter((f) => existsSync(f));
    if (files.length && files[0] === c.files[0]) return { family: c.family, files };
  }
  return null;
}

/**
 * Rasterises an SVG at 2× on white. Without a known font (`font` null) the system fonts are tried and a
 * one-line warning is printed (text may be missing from the PNG; the SVG is unaffected).
 */
export function svgToPng(svg: string, font: ChartFont | null = findChartFont()): Buffer {
  if (!font) {
    console.warn('mka: no DejaVu/Liberation/Arial font found (install fonts-dejavu-core); chart PNGs may lack text');
  }
  const fontOptions: ResvgRenderOptions['font'] = font
    ? { loadSystemFonts: false, fontFiles: font.files, defaultFontFamily: font.family, sansSerifFamily: font.family }
    : { loadSystemFonts: true };
  const resvg = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, background: 'white', font: fontOptions, logLevel: 'off' });
  return resvg.render().asPng();
}

/** Compiles a vega-lite spec and renders it headlessly to SVG text. */
export async function chartToSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parseVega(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Writes `${outBase}.svg` and `${outBase}.png` (2×, white background), each atomically. */
export async function renderChart(spec: TopLevelSpec, outBase: string): Promise<{ svg: string; png: string }> {
  const svgText = await chartToSvg(spec);
  const png = svgToPng(svgText);
  const paths = { svg: `${outBase}.svg`, png: `${outBase}.png` };
  atomicWriteText(paths.svg, svgText);
  await atomicWriteFile(paths.png, (fd) => writeAll(fd, png));
  return paths;
}
