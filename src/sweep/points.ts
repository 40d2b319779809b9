/**
 * The points of a sweep and where each one lives on disk. A point is "original" (the uncompressed
 * model) or "METHOD:K" (METHOD removing K layers). Every file a point needs or produces is named
 * here, so the local sweep, `--point`, `--report` and queue workers agree on the layout:
 *   plans/METHOD-K.json    the compression plan (written once by the calibration step)
 *   eval/NAME/             the point's resumable MMLU results (subjects/<subject>.json, ...)
 *   points/NAME.json       the finished point: its results.csv row, MMLU summary and plan summary
 */
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { getMethod } from '../compress/methods/registry.ts';
import { flag } from '../runtime/options.ts';
import { LIST_POINTS, POINT, SWEEP_METHODS, SWEEP_REMOVE } from './options.ts';

export interface PointId {
  method: string;
  /** Layers removed (0 for the original). */
  removed: number;
  /** Further axes of a sweep (e.g. quantize: 'q8'), named in files and labels only when present. */
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

/** The file-name form: "original" or "mka-4" (with extra axes "mka-4-quantize-q8"). */
export function pointName(p: PointId): string {
  const base = p.method === 'original' ? 'original' : `${p.method}-${p.removed}`;
  return [base, ...extraAxes(p).map(([k, v]) => `${k}-${v}`)].join('-');
}

/** Parses a --point value against the sweep's methods and counts. */
export function parsePoint(s: string, methods: readonly string[], remove: readonly number[]): PointId {
  if (s === 'original') return ORIGINAL;
  const m = /^([a-z0-9_-]+):(\d+)$/i.exec(s.trim());
  if (!m) throw new UserError(`${flag(POINT)} ${s}: expected "original" or METHOD:K, e.g. mka:4 (see ${flag(LIST_POINTS)})`);
  const p = { method: getMethod(m[1]).name, removed: Number(m[2]) };
  if (!methods.includes(p.method) || !remove.includes(p.removed)) {
    throw new UserError(`${flag(POINT)} ${s}: not a point of this sweep (${flag(SWEEP_METHODS)} ${methods.join(',')} ${flag(SWEEP_REMOVE)} ${remove.join(',')}); see ${flag(LIST_POINTS)}`);
  }
  return p.removed === 0 ? ORIGINAL : p;
}

/** Every point that is computed: the original once, then each method at each count above 0. */
export function sweepPoints(methods: readonly string[], remove: readonly number[]): PointId[] {
  return [ORIGINAL, ...methods.flatMap((method) => remove.filter((k) => k > 0).map((removed) => ({ method, removed })))];
}

export const pointFile = (out: string, p: PointId) => join(out, 'points', `${pointName(p)}.json`);
export const planFile = (out: string, p: PointId) => join(out, 'plans', `${pointName(p)}.json`);
export const evalDir = (out: string, p: PointId) => join(out, 'eval', pointName(p));
export const subjectFile = (out: string, p: PointId, subject: string) => join(evalDir(out, p), 'subjects', `${subject}.json`);
