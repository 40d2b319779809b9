/**
 * The points of a sweep and where each one lives on disk. A point is "original" (the uncompressed
 * model) or "METHOD:K" (METHOD removing K layers). Every file a point needs or produces is named
 * here, so the local sweep, `--point`, `--report` and queue workers agree on the layout:
 *   plans/METHOD-K.json    the compression plan (written once by the calibration step; a quantized
 *                          point "METHOD:K:quantize=SPEC" uses the plan of METHOD:K)
 *   eval/NAME/             the point's resumable MMLU results (subjects/<subject>.json, ...)
 *   points/NAME.json       the finished point: its results.csv row, MMLU summary and plan summary
 */
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { getMethod } from '../compress/methods/registry.ts';
import { flag } from '../runtime/options.ts';
import { LIST_POINTS, POINT, SWEEP_METHODS, SWEEP_QUANTIZE, SWEEP_REMOVE } from './options.ts';

export interface PointId {
  method: string;
  /** Layers removed (0 for the original). */
  removed: number;
  /** Further axes of a sweep (quantize: 'gptq:w4g32'), named in files and labels only when present (absent: the default, e.g. unquantized). */
  [axis: string]: string | number;
}

/** The extra axes of a point (all but method and removed), sorted by name. */
function extraAxes(p: PointId): [string, string | number][] {
  return Object.entries(p).filter(([k, v]) => k !== 'method' && k !== 'removed' && v !== undefined).sort(([a], [b]) => (a < b ? -1 : 1));
}

export const ORIGINAL: PointId = { method: 'original', removed: 0 };

/** "original" or "mka:4" (with extra axes "mka:4:quantize=q8"). */
export function pointLabel(p: PointId): string {
  const base = p.method === 'original' ? 'original' : `${p.method}:${p.removed}`;
  return [base, ...extraAxes(p).map(([k, v]) => `${k}=${v}`)].join(':');
}

/**
 * The file-name form: "original" or "mka-4" (with extra axes "mka-4-quantize-gptq-w4g32": characters
 * other than letters, digits, '.' and '_' in a value become '-').
 */
export function pointName(p: PointId): string {
  const base = p.method === 'original' ? 'original' : `${p.method}-${p.removed}`;
  return [base, ...extraAxes(p).map(([k, v]) => `${k}-${String(v).replace(/[^A-Za-z0-9._]+/g, '-')}`)].join('-');
}

/** The quantization of a point: its spec string (`gptq:w4g32`), or 'none'. */
export function pointQuantize(p: PointId): string {
  return typeof p.quantize === 'string' ? p.quantize : 'none';
}

/** The point of `method`/`removed` under quantization `spec` ('none': no quantize axis field, so unquantized points keep their names). */
export function withQuantize(p: PointId, spec: string): PointId {
  const { quantize: _q, ...rest } = p;
  return spec === 'none' ? (rest as PointId) : { ...rest, quantize: spec };
}

/** A point without its extra axes: whose plan it uses (a quantized point is its compressed model, quantized). */
export function basePoint(p: PointId): PointId {
  return p.method === 'original' ? ORIGINAL : { method: p.method, removed: p.removed };
}

/**
 * Parses a --point value against the sweep's methods, counts and quantizations: "original", METHOD:K,
 * and either with ":quantize=SPEC" for a point of the quantize axis (as --list-points prints them).
 */
export function parsePoint(s: string, methods: readonly string[], remove: readonly number[], quantize: readonly string[] = ['none']): PointId {
  const t = s.trim();
  const at = t.indexOf(':quantize=');
  const q = at < 0 ? 'none' : t.slice(at + ':quantize='.length);
  const head = at < 0 ? t : t.slice(0, at);
  if (!quantize.includes(q)) {
    throw new UserError(`${flag(POINT)} ${s}: quantization ${q} is not one of this sweep's (${flag(SWEEP_QUANTIZE)} ${quantize.join(',')}); see ${flag(LIST_POINTS)}`);
  }
  if (head === 'original') return withQuantize(ORIGINAL, q);
  const m = /^([a-z0-9_-]+):(\d+)$/i.exec(head);
  if (!m) throw new UserError(`${flag(POINT)} ${s}: expected "original" or METHOD:K, e.g. mka:4, optionally followed by :quantize=SPEC (see ${flag(LIST_POINTS)})`);
  const p = { method: getMethod(m[1]).name, removed: Number(m[2]) };
  if (!methods.includes(p.method) || !remove.includes(p.removed)) {
    throw new UserError(`${flag(POINT)} ${s}: not a point of this sweep (${flag(SWEEP_METHODS)} ${methods.join(',')} ${flag(SWEEP_REMOVE)} ${remove.join(',')}); see ${flag(LIST_POINTS)}`);
  }
  return withQuantize(p.removed === 0 ? ORIGINAL : p, q);
}

/**
 * Every point that is computed: the original (unquantized: every other point is compared with it), then
 * per quantization the original quantized (unless `none`) and each method at each count above 0.
 */
export function sweepPoints(methods: readonly string[], remove: readonly number[], quantize: readonly string[] = ['none']): PointId[] {
  const compressed = methods.flatMap((method) => remove.filter((k) => k > 0).map((removed): PointId => ({ method, removed })));
  return [ORIGINAL, ...quantize.flatMap((q) => (q === 'none' ? compressed : [ORIGINAL, ...compressed].map((p) => withQuantize(p, q))))];
}

export const pointFile = (out: string, p: PointId) => join(out, 'points', `${pointName(p)}.json`);
/** A point's plan: the compressed model's, shared by its quantizations. */
export const planFile = (out: string, p: PointId) => join(out, 'plans', `${pointName(basePoint(p))}.json`);
export const evalDir = (out: string, p: PointId) => join(out, 'eval', pointName(p));
export const subjectFile = (out: string, p: PointId, subject: string) => join(evalDir(out, p), 'subjects', `${subject}.json`);
