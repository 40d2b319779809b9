/**
 * The model card (README.md) of every model directory mka writes (compress, quantize, export hf), in
 * the form the Hugging Face hub reads and mergekit writes: YAML front matter (`base_model`,
 * `library_name`, `tags`, `pipeline_tag`), then what was done to the base model, how to reproduce it,
 * and what it scored when that is known. Writers pass the text as `extraFiles['README.md']` of
 * writeHfModel. `modelCardHistory` takes what an input model records (its merge.json, its
 * quantization_config) so a card written further down the line keeps the history.
 */
import { basename } from 'node:path';
import type { LlamaConfig } from '../model/config.ts';
import { mkaVersion } from '../runtime/version.ts';
import { flag } from '../runtime/options.ts';
import { OUT } from '../io/output-options.ts';
import { MODEL } from '../model/options.ts';
import { PLAN } from './options.ts';

/** One metric of an evaluation (contract 3's MetricValue): a fraction for accuracies, with its standard error. */
export interface CardMetric {
  value: number;
  stderr: number | null;
  n: number;
}

export interface ModelCardInfo {
  /** Title (default: the directory's name). */
  name?: string;
  /** The model this one was made from: a directory or a hub id (null when unknown, e.g. built in memory). */
  baseModel: string | null;
  /** One line saying what this model is. */
  summary: string;
  /** What merge.json holds: the plan summary (method, layers, steps, layer_sources, parameters) and calibration. */
  compression?: Record<string, unknown>;
  /** Weight quantization (`mka quantize`). */
  quantization?: { method: string; bits: number; group: number | 'in'; symmetric: boolean; details?: Record<string, unknown> };
  /** Scores when known: task → metric → value (contract 3's MetricsMap). */
  evaluation?: Record<string, Record<string, CardMetric>>;
  /** The mka command line that wrote the directory. */
  command?: string;
  /** Other files of the directory and what they hold. */
  files?: Record<string, string>;
}

const METHOD_NAMES: Record<string, string> = {
  mka: 'MKA (Liu et al., "Pruning via Merging", EMNLP 2024): layers merged with fusion ratios from a layer-similarity matrix',
  reverse: 'reverse: the last layers dropped',
  shortgpt: 'ShortGPT (Men et al., 2024): the blocks of lowest Block Influence dropped',
  angular: 'angular distance (Gromov et al., 2024): the consecutive blocks of smallest angular distance dropped',
  laco: 'LaCo (Yang et al., 2024): rear layers collapsed into a prior layer (RDSC merge), accepted by representation similarity',
  sleb: 'SLEB (Song et al., ICML 2024): blocks removed one at a time, each the one whose removal least raises calibration perplexity',
  taylor: 'Taylor+ (Kim et al., 2024, "Shortened LLaMA"): the blocks of least first-order Taylor importance dropped',
  magnitude: 'magnitude+ (Kim et al., 2024): the blocks of least weight magnitude dropped',
};

const num = (x: unknown, digits = 4): string => (typeof x === 'number' ? (Number.isInteger(x) ? String(x) : x.toFixed(digits)) : String(x));
const yamlString = (s: string) => JSON.stringify(s); // a JSON string is a valid YAML scalar
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

interface Source {
  layer: number;
  weight: number;
}

/** "4·0.6233 + 5·0.2358" for a layer's sources ("4" for a plain copy). */
function mixText(sources: Source[]): string {
  if (sources.length === 1 && sources[0].weight === 1) return String(sources[0].layer);
  return sources.map((s) => `${num(s.weight)} × ${s.layer}`).join(' + ');
}

function compressionSection(c: Record<string, unknown>): string[] {
  const lines: string[] = ['## Compression', ''];
  const method = String(c.method ?? 'plan');
  const original = Number(c.original_layers), layers = Number(c.layers);
  lines.push(`- method: \`${method}\`${METHOD_NAMES[method] ? `, ${METHOD_NAMES[method]}` : ''}`);
  if (Number.isFinite(original) && Number.isFinite(layers)) {
    lines.push(`- decoder layers: ${original} → ${layers} (${original - layers} removed, ${(100 * (original - layers) / original).toFixed(1)}%)`);
  }
  if (isObject(c.parameters) && Object.keys(c.parameters).length) {
    lines.push(`- parameters: ${Object.entries(c.parameters).map(([k, v]) => `${k} = ${num(v)}`).join(', ')}`);
  }
  if (typeof c.metric === 'string') lines.push(`- layer similarity: ${c.metric.toUpperCase()}`);
  if (c.blend_norms === true) lines.push('- RMSNorm weights blended with the same weights as the projections');
  if (c.keep_biases === true) lines.push('- biases of a merged layer kept from its first layer');
  if (isObject(c.fit_lambda)) lines.push(`- λ fitted per merge on the calibration activations (${String(c.fit_lambda.search ?? '1-D search')})`);
  if (typeof c.replayed_from === 'string') lines.push(`- replayed from the recorded plan \`${c.replayed_from}\``);
  const sources = Array.isArray(c.layer_sources) ? (c.layer_sources as { sources: Source[]; norms_from: number }[]) : [];
  if (sources.length) {
    const kept = sources.flatMap((l) => (l.sources.length === 1 && l.sources[0].weight === 1 ? [l.sources[0].layer] : []));
    const used = new Set(sources.flatMap((l) => l.sources.map((s) => s.layer)));
    const removed = Number.isFinite(original) ? Array.from({ length: original }, (_, i) => i).filter((i) => !used.has(i)) : [];
    if (removed.length) lines.push(`- original layers dropped: ${removed.join(', ')}`);
    const merged = sources.map((l, k) => ({ l, k })).filter(({ l }) => !(l.sources.length === 1 && l.sources[0].weight === 1));
    if (!merged.length) lines.push(`- original layers kept, in order: ${kept.join(', ')}`);
    lines.push('', '| layer | original layers (weight × layer) | norms from |', '|---:|---|---:|');
    sources.forEach((l, k) => lines.push(`| ${k} | ${mixText(l.sources)} | ${l.norms_from} |`));
  }
  const steps = Array.isArray(c.steps) ? (c.steps as Record<string, unknown>[]) : [];
  if (steps.some((s) => s.action === 'merge')) {
    const weighted = steps.some((s) => Array.isArray(s.weights));
    lines.push('', 'Merges, in order (layer indices of the model before each step):', '',
      `| step | layers | λ |${weighted ? ' weights |' : ''} score | note |`, `|---:|---|---:|${weighted ? '---|' : ''}---:|---|`);
    steps.forEach((s, i) => {
      if (s.action !== 'merge') return;
      const fit = isObject(s.fit) ? s.fit : null;
      const lambda = typeof s.lambda === 'number' ? num(s.lambda) + (fit ? ` (fitted; planned ${num(fit.lambdaPlanned)}, relative error ${num(fit.errorPlanned)} → ${num(fit.error)})` : '') : '';
      const weights = weighted ? ` ${Array.isArray(s.weights) ? (s.weights as number[]).map((w) => num(w)).join(', ') : ''} |` : '';
      lines.push(`| ${i + 1} | ${(s.layers as number[]).join(', ')} | ${lambda} |${weights} ${s.score === undefined ? '' : num(s.score)} | ${s.note ?? ''} |`);
    });
  }
  const cal = c.calibration;
  if (isObject(cal)) {
    lines.push('', '### Calibration', '');
    const parts: string[] = [];
    if (cal.source !== undefined) parts.push(`data \`${String(cal.source)}\``);
    if (cal.prompts !== undefined) parts.push(`${String(cal.prompts)} prompts`);
    if (cal.tokens !== undefined) parts.push(`${String(cal.tokens)} tokens`);
    if (cal.per_subject !== undefined && cal.per_subject !== null) parts.push(`${String(cal.per_subject)} per subject`);
    if (cal.seed !== undefined) parts.push(`seed ${String(cal.seed)}`);
    if (cal.representation !== undefined) parts.push(`representation ${String(cal.representation)}`);
    if (cal.protocol !== undefined) parts.push(`protocol ${String(cal.protocol)}`);
    lines.push(parts.join(', ') + '.');
  }
  return lines;
}

function evaluationSection(e: Record<string, Record<string, CardMetric>>): string[] {
  const lines = ['## Evaluation', '', '| task | metric | value | stderr | n |', '|---|---|---:|---:|---:|'];
  for (const [task, metrics] of Object.entries(e)) {
    for (const [metric, v] of Object.entries(metrics)) lines.push(`| ${task} | ${metric} | ${num(v.value)} | ${v.stderr === null ? '' : num(v.stderr)} | ${v.n} |`);
  }
  return lines;
}

/** The README.md text of a model directory. */
export function modelCard(info: ModelCardInfo): string {
  const c = info.compression;
  const tags = ['mka'];
  if (c) {
    const merges = Array.isArray(c.steps) && (c.steps as { action?: string }[]).some((s) => s.action === 'merge');
    tags.push(merges ? 'layer-merging' : 'layer-pruning');
  }
  if (info.quantization) tags.push('quantized');
  const front = [
    '---',
    ...(info.baseModel ? ['base_model:', `- ${yamlString(info.baseModel)}`] : []),
    'library_name: transformers',
    'pipeline_tag: text-generation',
    'tags:',
    ...tags.map((t) => `- ${t}`),
    '---',
  ];
  const lines = [...front, '', `# ${info.name ?? 'Model'}`, '', `${info.summary} Written by mka ${mkaVersion()}.`, ''];
  if (info.baseModel) lines.push(`Base model: \`${info.baseModel}\`.`, '');
  if (c) lines.push(...compressionSection(c), '');
  const q = info.quantization;
  if (q) {
    lines.push('## Quantization', '', `- ${q.method}: ${q.bits}-bit, ${q.group === 'in' ? 'one scale per output channel' : `groups of ${q.group}`}, ${q.symmetric ? 'symmetric' : 'asymmetric (scale and minimum)'}`);
    for (const [k, v] of Object.entries(q.details ?? {})) lines.push(`- ${k}: ${typeof v === 'object' ? JSON.stringify(v) : num(v)}`);
    lines.push('');
  }
  if (info.evaluation && Object.keys(info.evaluation).length) lines.push(...evaluationSection(info.evaluation), '');
  const planBase = c && typeof c.source_model === 'string' ? c.source_model : null;
  if (info.command || planBase) {
    lines.push('## Reproduce', '', '```sh');
    if (info.command) lines.push(info.command);
    if (planBase) lines.push(`mka compress ${flag(MODEL)} ${planBase} ${flag(PLAN)} merge.json ${flag(OUT)} OUT   # the same weights from the recorded plan`);
    lines.push('```', '');
  }
  if (info.files && Object.keys(info.files).length) {
    lines.push('## Files', '', ...Object.entries(info.files).map(([f, what]) => `- \`${f}\`: ${what}`), '');
  }
  return lines.join('\n');
}

/**
 * What an input model records about how it was made, for the card of a directory written from it: its
 * merge.json (read and checked by the caller, compress/plan-file.ts readMergeRecord; null when it has
 * none) and the quantization_config of its config (checked by readConfig).
 */
export function modelCardHistory(merge: Record<string, unknown> | null, config: Pick<LlamaConfig, 'quantization_config'>): Pick<ModelCardInfo, 'compression' | 'quantization'> & { baseModel: string | null } {
  const qc = config.quantization_config;
  const quantization = qc ? { method: qc.method, bits: qc.bits, group: qc.group_size === -1 ? 'in' as const : qc.group_size, symmetric: qc.sym, details: { ...qc } } : undefined;
  return {
    baseModel: typeof merge?.source_model === 'string' ? merge.source_model : null,
    ...(merge ? { compression: merge } : {}),
    ...(quantization ? { quantization } : {}),
  };
}

/** A card's title from the directory it is written to. */
export function cardName(out: string): string {
  return basename(out.replace(/[\\/]+$/, '')) || 'model';
}
