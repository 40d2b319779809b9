/**
 * Merging coupled with quantization (the paper's "even greater compression"): every method × layers
 * removed × quantization is built with mka's own commands (`compress [--quantize Q]`, or `quantize` for
 * the original) and evaluated with `eval mmlu --reference-model`, then results.csv / results.json and
 * accuracy-size.png (MMLU accuracy with its standard error against the model's bytes) go to --out.
 * Bytes count the paper's way (src/quant/size.ts modelBytes: 16 bits per float weight, packed weights
 * as stored), beside the share of layers removed. Points already evaluated are kept (rerun to resume).
 *
 *   npm run bench -- coupled [--model models/demo] [--data data/demo-mmlu] [--methods mka,reverse]
 *                            [--remove 0,2,3] [--quantize none,gptq:w4g32,rtn:w4g32,smoothquant:w8a8]
 *                            [--out results/coupled]
 *
 * CPU-heavy on anything but the demo: run under flock /work/notes/heavy.lock.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { measure } from './scale.ts';
import { atomicWriteText } from '../../src/io/atomic.ts';
import { readConfig } from '../../src/model/config.ts';
import { parseQuantization, quantizationName, type Quantization } from '../../src/quant/registry.ts';
import { modelBytes } from '../../src/quant/size.ts';
import { renderChart, sizeSpec } from '../../src/report/charts.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

interface Row {
  method: string; layers_removed: number; quantize: string; layer_ratio: number; bytes: number; size_ratio: number;
  accuracy: number; accuracy_stderr: number; perplexity: number; agreement: number; kl: number; questions: number;
}

/** The `mka quantize` flags of a quantization spec. */
function quantizeFlags(q: Quantization): string[] {
  return ['--method', q.method, '--bits', String(q.grid.bits), '--group-size', q.grid.group === 'channel' ? '0' : String(q.grid.group), ...(q.grid.symmetric ? [] : ['--asym']),
    '--embedding-bits', String(q.embeddingBits)];
}

export async function main(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .option('model', { type: 'string', default: join(ROOT, 'models', 'demo') })
    .option('data', { type: 'string', default: join(ROOT, 'data', 'demo-mmlu') })
    .option('methods', { type: 'string', default: 'mka,reverse' })
    .option('remove', { type: 'string', default: '0,2,3' })
    .option('quantize', { type: 'string', default: 'none,gptq:w4g32,rtn:w4g32,smoothquant:w8a8' })
    .option('out', { type: 'string', default: join(ROOT, 'results', 'coupled') })
    .strict().parse();
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const model = resolve(a.model), out = resolve(a.out);
  if (!existsSync(a.data)) throw new Error(`--data ${a.data}: no MMLU directory there (npm start makes data/demo-mmlu)`);
  const config = readConfig(model);
  const original = modelBytes(config, null);
  const quants = a.quantize.split(',').map((s) => (s === 'none' ? null : parseQuantization(s)));
  const removes = a.remove.split(',').map(Number);
  const points: { method: string; k: number; q: Quantization | null }[] = [];
  for (const q of quants) {
    if (removes.includes(0)) points.push({ method: 'original', k: 0, q });
    for (const method of a.methods.split(',')) for (const k of removes.filter((r) => r > 0)) points.push({ method, k, q });
  }
  const rows: Row[] = [];
  for (const [i, p] of points.entries()) {
    const qname = quantizationName(p.q);
    const name = `${p.method}-${p.k}-${qname.replace(/[^a-z0-9]+/gi, '-')}`;
    const dir = p.method === 'original' && !p.q ? model : join(out, 'models', name);
    const evalDir = join(out, 'eval', name);
    log(`[${i + 1}/${points.length}] ${name}`);
    if (!existsSync(join(evalDir, 'summary.json'))) {
      if (dir !== model && !existsSync(join(dir, 'config.json'))) {
        const step = p.method === 'original'
          ? await measure('compress', ['quantize', '--model', model, ...quantizeFlags(p.q!), '--data', a.data, '--out', dir, '--quiet'], log)
          : await measure('compress', ['compress', '--model', model, '--method', p.method, '--remove', String(p.k), '--data', a.data, ...(p.q ? ['--quantize', qname] : []), '--out', dir, '--quiet'], log);
        if (step.exitCode !== 0) throw new Error(`${name}: building the model failed (exit ${step.exitCode})`);
      }
      const e = await measure('eval', ['eval', 'mmlu', '--model', dir, '--data', a.data, '--reference-model', model, '--out', evalDir, '--quiet'], log);
      if (e.exitCode !== 0) throw new Error(`${name}: eval mmlu failed (exit ${e.exitCode})`);
    }
    const s = (JSON.parse(readFileSync(join(evalDir, 'summary.json'), 'utf8')) as { overall: { accuracy: number; perplexity: number; agreement: number; kl: number; questions: number } }).overall;
    const layers = readConfig(dir).num_hidden_layers;
    const bytes = modelBytes({ ...readConfig(dir), quantization_config: null }, p.q);
    rows.push({
      method: p.method, layers_removed: p.k, quantize: qname, layer_ratio: p.k / config.num_hidden_layers, bytes, size_ratio: bytes / original,
      accuracy: s.accuracy, accuracy_stderr: Math.sqrt(s.accuracy * (1 - s.accuracy) / (s.questions - 1)), perplexity: s.perplexity, agreement: s.agreement, kl: s.kl, questions: s.questions,
    });
    if (layers !== config.num_hidden_layers - p.k) throw new Error(`${name}: ${layers} layers, expected ${config.num_hidden_layers - p.k}`);
  }
  const cols = Object.keys(rows[0]) as (keyof Row)[];
  atomicWriteText(join(out, 'results.csv'), [cols.join(','), ...rows.map((r) => cols.map((c) => r[c]).join(','))].join('\n') + '\n');
  atomicWriteText(join(out, 'results.json'), JSON.stringify({ model, data: a.data, original_bytes_16bit: original, rows }, null, 2) + '\n');
  // each method's line starts at the original (0 layers removed) of its quantization
  const methods = a.methods.split(',');
  const chartRows = rows.flatMap((r) => (r.method === 'original' ? methods : [r.method]).map((series) => ({
    series, quantize: r.quantize, label: String(r.layers_removed), bytes: r.bytes, accuracy: r.accuracy, stderr: r.accuracy_stderr,
  })));
  await renderChart(sizeSpec(chartRows, 'MMLU accuracy against model size (labels: layers removed)'), join(out, 'accuracy-size'));
  for (const r of rows) log(`${r.method.padEnd(8)} -${r.layers_removed} ${r.quantize.padEnd(16)} ${(r.bytes / 1e6).toFixed(3)} MB (${(100 * r.size_ratio).toFixed(1)}%)  acc ${(100 * r.accuracy).toFixed(2)} ± ${(100 * r.accuracy_stderr).toFixed(2)}  ppl ${r.perplexity.toFixed(4)}  agreement ${(100 * r.agreement).toFixed(2)}  KL ${r.kl.toFixed(4)}`);
  log(`-> ${join(out, 'results.csv')}, results.json, accuracy-size.png`);
}
