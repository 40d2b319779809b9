/**
 * Small schemas for the files mka reads back (results, points, plans, keys): one schema per file kind,
 * declared beside the code that writes the file, checks a parsed JSON value and returns it typed. A
 * value that does not fit (a stale file from an older mka, a hand edit, a truncated write) is a
 * one-line UserError naming the file, the field and what it must be, and how to fix it; never a cast
 * that fails later, far from its cause.
 *
 *   const POINT = object({ method: string, removed: integer, seconds: optional(number) });
 *   const p = readChecked(file, POINT, 'sweep point file', 'delete it to recompute the point');
 */
import { UserError } from '../runtime/errors.ts';
import { describeJson, isPlainObject, readJsonFile } from './read.ts';

/** Checks a value found at `at` (a path inside the file, e.g. `questions[3].answer`) and returns it typed. */
export type Schema<T> = (value: unknown, at: string) => T;

/** A value that does not fit its schema: where, and what it must be. */
export class SchemaMismatch extends Error {
  constructor(readonly at: string, readonly expected: string, readonly got: unknown) {
    super(`${at || 'the file'} must be ${expected}, not ${shown(got)}`);
    this.name = 'SchemaMismatch';
  }
}

function shown(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return v.length > 40 ? `a string ("${v.slice(0, 37)}...")` : JSON.stringify(v);
  return v === undefined ? 'missing' : describeJson(v);
}

function fits<T>(expected: string, test: (v: unknown) => boolean): Schema<T> {
  return (v, at) => {
    if (!test(v)) throw new SchemaMismatch(at, expected, v);
    return v as T;
  };
}

export const string: Schema<string> = fits('a string', (v) => typeof v === 'string');
export const boolean: Schema<boolean> = fits('true or false', (v) => typeof v === 'boolean');
/** A finite number (JSON cannot hold others). */
export const number: Schema<number> = fits('a number', (v) => typeof v === 'number' && Number.isFinite(v));
export const integer: Schema<number> = fits('an integer', (v) => Number.isSafeInteger(v));
/** Any JSON value, unchecked (a field mka carries along without reading). */
export const anyJson: Schema<unknown> = (v) => v;

/** One of the given strings. */
export function literal<const T extends string>(...values: T[]): Schema<T> {
  return fits(values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((x) => JSON.stringify(x)).join(', ')}`,
    (v) => typeof v === 'string' && (values as string[]).includes(v));
}

/** A number in [min, max]. */
export function range(min: number, max: number, of: Schema<number> = number): Schema<number> {
  return (v, at) => {
    const x = of(v, at);
    if (x < min || x > max) throw new SchemaMismatch(at, `from ${min} to ${max}`, v);
    return x;
  };
}

export function nullable<T>(s: Schema<T>): Schema<T | null> {
  return (v, at) => (v === null ? null : s(v, at));
}

export function array<T>(item: Schema<T>): Schema<T[]> {
  return (v, at) => {
    if (!Array.isArray(v)) throw new SchemaMismatch(at, 'an array', v);
    return v.map((x, i) => item(x, `${at}[${i}]`));
  };
}

/** An object whose keys are free and whose values fit `value`. */
export function record<T>(value: Schema<T>): Schema<Record<string, T>> {
  return (v, at) => {
    if (!isPlainObject(v)) throw new SchemaMismatch(at, 'an object', v);
    const out: Record<string, T> = {};
    for (const [k, x] of Object.entries(v)) out[k] = value(x, field(at, k));
    return out;
  };
}

/** A field that may be absent (absent and undefined are the same in JSON). */
export interface Optional<T> { optional: Schema<T> }
export function optional<T>(s: Schema<T>): Optional<T> {
  return { optional: s };
}

type Shape = Record<string, Schema<unknown> | Optional<unknown>>;
type Required<S extends Shape> = { [K in keyof S as S[K] extends Optional<unknown> ? never : K]: S[K] extends Schema<infer T> ? T : never };
type Optionals<S extends Shape> = { [K in keyof S as S[K] extends Optional<unknown> ? K : never]?: S[K] extends Optional<infer T> ? T : never };
/** The value type of an object schema's shape. */
export type ObjectOf<S extends Shape> = { [K in keyof (Required<S> & Optionals<S>)]: (Required<S> & Optionals<S>)[K] };

const field = (at: string, k: string) => (at ? `${at}.${k}` : k);

/**
 * An object with the fields of `shape` (each checked; optional ones may be absent). Other fields are
 * kept as they are (files carry fields that only their writer or a newer mka reads).
 */
export function object<const S extends Shape>(shape: S): Schema<ObjectOf<S> & Record<string, unknown>> {
  return (v, at) => {
    if (!isPlainObject(v)) throw new SchemaMismatch(at, 'an object', v);
    const out: Record<string, unknown> = { ...v };
    for (const [k, s] of Object.entries(shape)) {
      if (typeof s === 'function') out[k] = s(v[k], field(at, k));
      else if (v[k] !== undefined) out[k] = s.optional(v[k], field(at, k));
    }
    return out as ObjectOf<S> & Record<string, unknown>;
  };
}

/**
 * Checks `value` (read from `path`) against `schema`; a mismatch is a UserError naming the file, what
 * it is, the field and the fix ("delete it to recompute", "choose another --out", ...).
 */
export function checked<T>(value: unknown, schema: Schema<T>, path: string, what: string, fix: string): T {
  try {
    return schema(value, '');
  } catch (e) {
    if (!(e instanceof SchemaMismatch)) throw e;
    throw new UserError(`${path}: not a valid ${what} (${e.message}); ${fix}`);
  }
}

/** Reads a JSON file and checks it against `schema` (see `checked`). */
export function readChecked<T>(path: string, schema: Schema<T>, what: string, fix: string): T {
  return checked(readJsonFile(path, what), schema, path, what, fix);
}
