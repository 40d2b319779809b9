/**
 * Option checks every command shares, run once after yargs has parsed the command line and before
 * any work starts: one value of the declared type (--config files can hold anything), numbers
 * (finite, integer, range), empty values, and the kind of every path (an input file or directory must
 * exist as such). Outputs, files and directories, are checked when the command claims them (the output
 * guard, src/io/output-dir.ts, through claimOutput and claimFile in common.ts). Rules go by option name, so a new
 * command that reuses a name gets its checks (and one that gives a name another meaning, e.g. --model
 * as a hub id, must not reuse it). Each failure is a UserError naming the option and the fix.
 */
import { existsSync, statSync } from 'node:fs';
import type { Argv } from 'yargs';
import { UserError } from '../runtime/errors.ts';

interface NumberRule {
  integer?: boolean;
  /** Smallest allowed value. */
  min?: number;
  /** Values must be strictly greater. */
  above?: number;
  max?: number;
}

/** Numeric options by name; every other number option must still be a finite number. */
const NUMBER_RULES: Record<string, NumberRule> = {
  threads: { integer: true, min: 1 },
  'max-positions': { integer: true, min: 1 },
  'micro-batch': { integer: true, min: 1 },
  'batch-size': { integer: true, min: 1 },
  'per-subject': { integer: true, min: 1 },
  subjects: { integer: true, min: 1 },
  'calib-subjects': { integer: true, min: 1 },
  seed: { integer: true, min: 0 },
  'calib-shots': { integer: true, min: 0 },
  ntrain: { integer: true, min: 0 },
  limit: { integer: true, min: 1 },
  remove: { integer: true, min: 0 },
  'max-new-tokens': { integer: true, min: 1 },
  temperature: { min: 0 },
  'shard-mb': { above: 0 },
  'max-seq': { integer: true, min: 1 },
  dims: { integer: true, min: 1 },
  'k-mi': { integer: true, min: 1 },
  'k-entropy': { integer: true, min: 1 },
  sigma: { above: 0 },
  alpha: { min: 0, max: 1 },
  beta: { above: 0 },
  port: { integer: true, min: 0, max: 65535 },
};

/** Input paths by option name and what they must be. */
const INPUT_PATHS: Record<string, 'directory' | 'file'> = {
  model: 'directory',
  'reference-model': 'directory',
  data: 'directory',
  calibration: 'file',
  activations: 'file',
  checkpoint: 'file',
  tokenizer: 'file',
};

/** Commands where an option of INPUT_PATHS names the other kind (serve's --tokenizer is the directory of a tokenizer.json). */
const INPUT_PATHS_OF: Record<string, Record<string, 'directory' | 'file'>> = { serve: { tokenizer: 'directory' } };

/** Options whose value may be the empty string. */
const MAY_BE_EMPTY = new Set(['prompt', 'text']);

function describeRule(r: NumberRule): string {
  const kind = r.integer ? 'an integer' : 'a number';
  if (r.max !== undefined) return `${kind} from ${r.min ?? r.above} to ${r.max}`;
  if (r.above !== undefined) return `${kind} > ${r.above}`;
  if (r.min !== undefined) return r.integer && r.min === 1 ? 'a positive integer' : `${kind} >= ${r.min}`;
  return kind;
}

/** What the user typed for option `name` (`--name v` or `--name=v`), if on the command line. */
function rawValue(raw: readonly string[], name: string): string | undefined {
  for (let i = raw.length - 1; i >= 0; i--) {
    if (raw[i] === `--${name}`) return raw[i + 1];
    if (raw[i].startsWith(`--${name}=`)) return raw[i].slice(name.length + 3);
  }
  return undefined;
}

/** Throws unless `value` of option `name` satisfies its rule (or is at least a finite number). */
export function checkNumber(name: string, value: unknown, typed?: string): void {
  const rule = NUMBER_RULES[name] ?? {};
  const ok = typeof value === 'number' && Number.isFinite(value)
    && (!rule.integer || Number.isInteger(value))
    && (rule.min === undefined || value >= rule.min)
    && (rule.above === undefined || value > rule.above)
    && (rule.max === undefined || value <= rule.max);
  if (!ok) {
    const shown = typed ?? (typeof value === 'number' ? (Number.isNaN(value) ? '(not a number)' : String(value)) : JSON.stringify(value));
    throw new UserError(`--${name} ${shown}: must be ${describeRule(rule)}`);
  }
}

/** Options given as `--name=` or `--name ""` in the raw command line. */
function emptyOptions(raw: readonly string[]): string[] {
  const names: string[] = [];
  raw.forEach((t, i) => {
    const m = /^--([^=]+)=$/.exec(t);
    if (m) names.push(m[1]);
    else if (t.startsWith('--') && !t.includes('=') && raw[i + 1] === '') names.push(t.slice(2));
  });
  return names;
}

function checkInputPath(name: string, path: string, kind: 'directory' | 'file'): void {
  if (!existsSync(path)) throw new UserError(`${path}: --${name} not found; give an existing ${kind}`);
  const st = statSync(path);
  if (kind === 'directory' && !st.isDirectory()) throw new UserError(`${path}: --${name} is a file, but must be a directory`);
  if (kind === 'file' && st.isDirectory()) throw new UserError(`${path}: --${name} is a directory, but must be a file`);
  if (kind === 'file' && !st.isFile()) throw new UserError(`${path}: --${name} is not a regular file (a FIFO, socket or device); give a regular file`);
}

/** The options yargs declared for the command, by type. */
export interface DeclaredOptions {
  number: readonly string[];
  string: readonly string[];
  boolean: readonly string[];
}

/**
 * Throws unless every boolean option given as `--name=VALUE` on the command line, or in the --config
 * file, is true or false (yargs reads any other word as false).
 */
function checkBooleans(declared: DeclaredOptions, raw: readonly string[], config: Record<string, unknown>): void {
  for (const t of raw) {
    if (t === '--') break;
    const m = /^--(?:no-)?([^=]+)=(.*)$/.exec(t);
    if (m && declared.boolean.includes(m[1]) && m[2] !== 'true' && m[2] !== 'false') throw new UserError(`--${m[1]}=${m[2]}: must be true or false (or leave out the value)`);
  }
  for (const [name, v] of Object.entries(config)) {
    if (declared.boolean.includes(name) && typeof v !== 'boolean') throw new UserError(`--${name} ${JSON.stringify(v)} in --config: must be true or false (YAML's yes/no/on/off are text)`);
  }
}

/** Throws unless every given option has one value of its declared type (--config files can hold anything). */
function checkTypes(argv: Record<string, unknown>, declared: DeclaredOptions): void {
  for (const [name, value] of Object.entries(argv)) {
    if (name === '_' || name === '$0' || /[A-Z]/.test(name)) continue;
    if (Array.isArray(value)) throw new UserError(`--${name} is given more than once (or as a list in --config); give it once`);
    if (value === null) throw new UserError(`--${name} has no value (null in --config?); give it a value or leave it out`);
    const expect = declared.string.includes(name) ? 'string' : declared.boolean.includes(name) ? 'boolean' : null;
    if (expect && value !== undefined && typeof value !== expect) {
      throw new UserError(`--${name} ${JSON.stringify(value)}: must be ${expect === 'string' ? 'text (quote it in a --config file)' : 'true or false'}`);
    }
  }
}

/** Checks a parsed command line: see the file comment. `raw` is the argv yargs parsed, `config` the --config file's values. */
export function validateArgs(argv: Record<string, unknown>, declared: DeclaredOptions, raw: readonly string[], config: Record<string, unknown> = {}): void {
  const command = (argv._ as unknown[] | undefined)?.map(String) ?? [];
  for (const name of emptyOptions(raw)) {
    if (!MAY_BE_EMPTY.has(name)) throw new UserError(`--${name} is empty; give it a value or leave it out`);
  }
  checkBooleans(declared, raw, config);
  checkTypes(argv, declared);
  for (const name of declared.number) {
    if (argv[name] !== undefined) checkNumber(name, argv[name], rawValue(raw, name));
  }
  for (const [name, value] of Object.entries(argv)) {
    if (typeof value !== 'string' || name === '$0' || /[A-Z]/.test(name)) continue; // camelCase: yargs' alias of a kebab name
    if (value === '' && !MAY_BE_EMPTY.has(name)) throw new UserError(`--${name} is empty; give it a value or leave it out`);
    const kind = INPUT_PATHS_OF[command[0]]?.[name] ?? INPUT_PATHS[name];
    if (kind) checkInputPath(name, value, kind);
  }
}

/** Registers the checks on a yargs instance (for every command). */
export function withValidation<T>(y: Argv<T>, raw: readonly string[], config: Record<string, unknown> = {}): Argv<T> {
  // yargs passes the command's own instance as the middleware's second argument (its types leave it
  // out, hence optional here); its options are the command's
  const check = (argv: Record<string, unknown>, yi?: { getOptions(): DeclaredOptions }) => {
    if (!yi) throw new Error('yargs called the validation middleware without its instance');
    validateArgs(argv, yi.getOptions(), raw, config);
  };
  return y.middleware(check);
}

/** The items of a comma-separated list ("a, b"); an empty list or an empty item ("a,,b", ",") is a UserError naming `option`. */
export function parseList(s: string | number, option: string, example: string): string[] {
  const items = String(s).split(',').map((x) => x.trim());
  if (items.some((x) => x === '')) throw new UserError(`${option} ${s}: expected a comma-separated list without empty items, e.g. ${example}`);
  return items;
}

/** Parses "0,2,4" into sorted distinct layer counts. */
export function parseCounts(s: string | number, option = '--remove'): number[] {
  const xs = parseList(s, option, '0,2,4').map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
  if (xs.some((x) => !Number.isSafeInteger(x))) throw new UserError(`${option} ${s}: expected comma-separated layer counts, e.g. 0,2,4`);
  return [...new Set(xs)].sort((a, b) => a - b);
}

/** Parses "mka,reverse" into method names, each one of `known`. */
export function parseMethods(s: string, known: readonly string[], option = '--methods'): string[] {
  const names = parseList(s, option, 'mka,reverse');
  const unknown = names.find((n) => !known.includes(n));
  if (unknown !== undefined) throw new UserError(`${option} ${s}: ${unknown} is not a method; methods: ${known.join(', ')}`);
  return [...new Set(names)];
}

/** Checks `--chosen method:k` names one of the sweep's methods and counts. */
export function checkChosen(chosen: string | undefined, methods: readonly string[], counts: readonly number[]): void {
  if (chosen === undefined) return;
  const m = /^([^:]+):(\d+)$/.exec(chosen);
  if (!m) throw new UserError(`--chosen ${chosen}: expected METHOD:COUNT, e.g. mka:2`);
  if (!methods.includes(m[1])) throw new UserError(`--chosen ${chosen}: method ${m[1]} is not in --methods (${methods.join(', ')})`);
  if (!counts.includes(Number(m[2]))) throw new UserError(`--chosen ${chosen}: count ${m[2]} is not in --remove (${counts.join(', ')})`);
}

/** Checks token ids against the vocabulary size. */
export function checkIds(ids: readonly number[], vocabSize: number): void {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) throw new UserError(`--ids: token id ${bad} is outside the vocabulary (0 to ${vocabSize - 1})`);
}
