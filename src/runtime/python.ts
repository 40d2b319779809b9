/**
 * The few Python behaviours lm-evaluation-harness's requests, prompts and output files depend on, so that
 * mka builds the same strings and the same hashes: str.isspace/strip/rstrip/capitalize, len() in code
 * points, str() of a float, and json.dumps(obj, indent=2, ensure_ascii=False).
 */
import { createHash } from 'node:crypto';

/** Python's str.isspace characters (a superset of JavaScript's \s but for U+FEFF, which Python does not count). */
const PY_SPACE = /[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

/** Whether a character is whitespace as Python's str.isspace says. */
export function isPySpace(ch: string): boolean {
  return ch.length > 0 && PY_SPACE.test(ch);
}

/** Python's str.rstrip() (no argument). */
export function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && isPySpace(s[end - 1])) end--;
  return s.slice(0, end);
}

/** Python's str.strip() (no argument). */
export function pyStrip(s: string): string {
  let start = 0;
  while (start < s.length && isPySpace(s[start])) start++;
  return pyRstrip(s.slice(start));
}

/** len(s) in Python: code points, not UTF-16 units. */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Python's str.capitalize(): the first character upper-cased, the rest lower-cased. */
export function pyCapitalize(s: string): string {
  const [first, ...rest] = [...s];
  return first === undefined ? '' : first.toUpperCase() + rest.join('').toLowerCase();
}

/** str(x) of a Python float: the shortest repr, with ".0" on integral values and Python's exponent form. */
export function pyFloatStr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (Object.is(x, -0)) return '-0.0';
  const abs = Math.abs(x);
  if (abs !== 0 && (abs >= 1e16 || abs < 1e-4)) {
    // Python: 1e-05, 1.5e+16 (two exponent digits at least); JavaScript: 1e-5, 1.5e+16
    const [mant, exp] = x.toExponential().split('e');
    const e = Number(exp);
    return `${mant}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  const s = String(x);
  return Number.isInteger(x) ? `${s}.0` : s;
}

/** A value for pyJson: an integer that Python holds as a float is wrapped, so it prints as 1.0. */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** json.dumps(value, indent=indent, ensure_ascii=False) as Python writes it (numbers are ints unless wrapped in PyFloat or fractional). */
export function pyJson(value: unknown, indent: number | null = null, level = 0): string {
  const pad = (n: number) => (indent === null ? '' : '\n' + ' '.repeat(indent * n));
  const itemSep = indent === null ? ', ' : ',';
  if (value === null || value === undefined) return 'null';
  if (value instanceof PyFloat) return pyJsonNumber(value.value, true);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return pyJsonNumber(value, !Number.isInteger(value));
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[${value.map((v) => pad(level + 1) + pyJson(v, indent, level + 1)).join(itemSep)}${pad(level)}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return '{}';
  return `{${entries.map(([k, v]) => `${pad(level + 1)}${JSON.stringify(k)}: ${pyJson(v, indent, level + 1)}`).join(itemSep)}${pad(level)}}`;
}

function pyJsonNumber(x: number, float: boolean): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  return float ? pyFloatStr(x) : String(x);
}

/** lm-eval's hash_string: sha256 hex of the UTF-8 bytes. */
export function hashString(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}
