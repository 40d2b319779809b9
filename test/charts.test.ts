import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import {
  accuracySpec, categoriesSpec, chartToSvg, findChartFont, renderChart, similarityHeatmapSpec, sizeSpec, svgToPng,
} from '../src/report/charts.ts';
import { getSimilarityMetric } from '../src/compress/similarity/index.ts';
import { scratchDir } from './scratch.ts';

const NPIB = getSimilarityMetric('npib').scale;

/** Minimal decoder for the 8-bit RGBA, non-interlaced PNGs resvg writes (independent of resvg). */
function decodePng(buf: Buffer): { width: number; height: number; rgba: Uint8Array } {
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  assert.equal(buf.toString('latin1', 12, 16), 'IHDR');
  const width = buf.readUInt32BE(16);
  const height = buf.readUInt32BE(20);
  assert.deepEqual([buf[24], buf[25], buf[28]], [8, 6, 0], 'expected 8-bit RGBA, non-interlaced');
  const idat: Buffer[] = [];
  for (let off = 8; off < buf.length;) {
    const len = buf.readUInt32BE(off);
    if (buf.toString('latin1', off + 4, off + 8) === 'IDAT') idat.push(buf.subarray(off + 8, off + 8 + len));
    off += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * 4;
  const rgba = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = rgba.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? rgba.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= 4 ? row[x - 4] : 0;
      const b = prev[x];
      const c = x >= 4 ? prev[x - 4] : 0;
      const p = a + b - c;
      const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      assert.ok(pred !== undefined, `bad PNG filter ${filter}`);
      row[x] = (src[x] + pred) & 0xff;
    }
  }
  return { width, height, rgba };
}

/** Fraction of pixels that are clearly not white, and of those that are dark (text, axes). */
function inkStats(rgba: Uint8Array): { ink: number; dark: number } {
  let ink = 0, dark = 0;
  const n = rgba.length / 4;
  for (let i = 0; i < rgba.length; i += 4) {
    const lum = (rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3;
    assert.equal(rgba[i + 3], 255, 'background must be opaque white');
    if (lum < 230) ink++;
    if (lum < 80) dark++;
  }
  return { ink: ink / n, dark: dark / n };
}

/** Checks both files of a rendered chart and returns the decoded PNG. */
function checkRendered(paths: { svg: string; png: string }, mustContain: string[]) {
  const svg = readFileSync(paths.svg, 'utf8');
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\s*$/);
  for (const s of mustContain) assert.ok(svg.includes(s), `SVG should contain ${JSON.stringify(s)}`);
  const svgW = Number(/^<svg [^>]*width="([\d.]+)"/.exec(svg)?.[1]);
  const svgH = Number(/^<svg [^>]*height="([\d.]+)"/.exec(svg)?.[1]);
  const png = decodePng(readFileSync(paths.png));
  assert.equal(png.width, Math.ceil(svgW * 2), 'PNG is the SVG at 2×');
  assert.equal(png.height, Math.ceil(svgH * 2), 'PNG is the SVG at 2×');
  assert.ok(png.width >= 600 && png.width <= 2000 && png.height >= 300 && png.height <= 2000,
    `implausible PNG size ${png.width}×${png.height}`);
  return png;
}

const methods = ['mka', 'drop-layers'];
const accRows = methods.flatMap((method, m) => [0, 2, 4, 6].map((k) => (
  { method, layersRemoved: k, ratio: k / 16, accuracy: 0.45 - (m + 1) * 0.01 * k })));

test('renders the three charts to SVG and non-blank PNG', async () => {
  const dir = scratchDir('charts');
  try {
    const npib = [[1, 0.8, null], [0.8, 1, 0.6], [null, 0.6, 1]];
    const sim = checkRendered(await renderChart(similarityHeatmapSpec(npib, 'toy NPIB', NPIB), join(dir, 'similarity')),
      ['toy NPIB', 'grey cells', '0.80', 'layer', 'not a 0–1 similarity', 'NPIB (unbounded)']);
    assert.ok(inkStats(sim.rgba).ink > 0.2, 'heatmap should be mostly coloured');

    const acc = checkRendered(await renderChart(accuracySpec(accRows, 0.45, 0.25), join(dir, 'accuracy')),
      [...methods, 'uncompressed 45.0%', 'chance 25.0%', 'accuracy']);
    const accInk = inkStats(acc.rgba);
    assert.ok(accInk.ink > 0.01 && accInk.ink < 0.5, `accuracy chart ink ${accInk.ink}`);

    const cats = categoriesSpec(['STEM', 'humanities'].flatMap((category) => [
      { category, setting: 'original', accuracy: 0.5 }, { category, setting: 'mka −4 layers', accuracy: 0.4 }]));
    const cat = checkRendered(await renderChart(cats, join(dir, 'categories')),
      ['STEM', 'humanities', 'original', 'mka −4 layers', '50.0%']);
    assert.ok(inkStats(cat.rgba).ink > 0.05, 'bars should be drawn');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('accuracy against model size: one line per method and quantization, error bars, labels', async () => {
  const dir = scratchDir('charts');
  try {
    const rows = ['none', 'gptq:w4g32'].flatMap((quantize, qi) => [0, 2, 4].map((k) => ({
      series: 'mka', quantize, label: String(k), bytes: (qi ? 0.3e6 : 0.87e6) * (1 - k / 10), accuracy: 0.9 - 0.02 * k - 0.01 * qi, stderr: 0.005,
    })));
    const spec = sizeSpec(rows, 'toy size chart') as unknown as { layer: { mark: { type: string } }[]; data: { values: { lo: number; hi: number; mb: number }[] } };
    assert.deepEqual(spec.layer.map((l) => l.mark.type), ['rule', 'line', 'text'], 'error bars, lines with points, labels');
    assert.deepEqual(spec.data.values.map((v) => [v.lo, v.hi].map((x) => +x.toFixed(4))), rows.map((r) => [r.accuracy - 0.005, r.accuracy + 0.005].map((x) => +x.toFixed(4))));
    assert.equal(spec.data.values[0].mb, 0.87);
    const png = checkRendered(await renderChart(spec as never, join(dir, 'size')), ['toy size chart', 'gptq:w4g32', 'none', 'mka', 'model size (MB']);
    assert.ok(inkStats(png.rgba).ink > 0.01, 'lines and points are drawn');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('heatmap: all-null matrix and L > 16 (no cell labels) still render', async () => {
  const dir = scratchDir('charts');
  try {
    checkRendered(await renderChart(similarityHeatmapSpec([[null, null], [null, null]], 'nulls', NPIB), join(dir, 'nulls')), ['grey cells']);
    const L = 20;
    const big = Array.from({ length: L }, (_, i) => Array.from({ length: L }, (_, j) => 1 / (1 + Math.abs(i - j))));
    const paths = await renderChart(similarityHeatmapSpec(big, 'big', NPIB), join(dir, 'big'));
    checkRendered(paths, ['19']);
    const svg = readFileSync(paths.svg, 'utf8');
    assert.ok(!svg.includes('0.50<'), 'cells are not labelled beyond 16 layers');
    assert.ok(!svg.includes('grey cells'), 'no null note without nulls');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => similarityHeatmapSpec([[1, 2]], 'not square', NPIB), /square/);
});

test('PNG text is actually drawn (a font was found)', { skip: !findChartFont() && 'no known font on this machine' }, async () => {
  const dir = scratchDir('charts');
  try {
    const textOnly = {
      background: 'white', width: 300, height: 60, data: { values: [{ t: 'MMLU accuracy' }] },
      mark: { type: 'text', fontSize: 40, color: 'black' }, encoding: { text: { field: 't' } },
    } as const;
    const { png } = await renderChart(textOnly, join(dir, 'text'));
    const { dark } = inkStats(decodePng(readFileSync(png)).rgba);
    assert.ok(dark > 0.01, `only ${dark} of the pixels are dark: text was not drawn`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without a font the PNG still renders, with a one-line warning', async (t) => {
  const warn = t.mock.method(console, 'warn', () => {});
  const png = decodePng(svgToPng(await chartToSvg(accuracySpec(accRows, 0.45)), null));
  assert.ok(png.width > 600 && inkStats(png.rgba).ink > 0.01, 'lines are still drawn');
  assert.equal(warn.mock.callCount(), 1);
  assert.match(String(warn.mock.calls[0].arguments[0]), /^mka: no .*font.*fonts-dejavu-core[^\n]*$/);
});
