/**
 * Option declarations (contract 5): each option is declared once, as an `OptionSpec` beside the library
 * code whose typed options object it fills (name, type, default, range, help). The CLI derives its
 * yargs options, help, --config checks and typed values from the specs (src/cli/options.ts); library
 * code checks values with `checkOption` and names options in its messages with `flag(spec)`, never by
 * spelling them, so renaming an option is one line: its spec's `option`.
 */
import { UserError } from './errors.ts';

export type OptionType = 'string' | 'number' | 'integer' | 'boolean' | 'choice';

export interface OptionSpec {
  /** The key of the value in the library's typed options object (camelCase). */
  name: string;
  /** How the option is spelled on the command line (`--option`) and in a --config file. */
  option: string;
  type: OptionType;
  /** One line of help; the default and range are added to it where the CLI shows it. */
  help: string;
  /** The value when the option is not given (none: the option is then undefined, or required). */
  default?: unknown;
  /** The allowed values of a `choice` option. */
  choices?: readonly string[];
  /** Smallest allowed value (inclusive). */
  min?: number;
  /** Largest allowed value (inclusive). */
  max?: number;
  /** Values must be strictly greater than this. */
  above?: number;
  /** A number option that also accepts the word `auto`. */
  auto?: boolean;
  /** A comma-separated list of values of `type` (the value is then an array). */
  list?: boolean;
  /**
   * A path the option names, checked before any work: an existing file or directory (an input), a model
   * (a model directory or a GGUF model file), or an output file.
   */
  path?: 'file' | 'directory' | 'model' | 'output-file';
  /** The value may be a Hugging Face hub id of this kind, resolved to a local path before the path is checked. */
  hub?: 'model' | 'mmlu';
  /** The empty string is a value (else `--x=` is refused). */
  empty?: boolean;
  /** The command cannot run without it. */
  required?: boolean;
  /** The section of --help it is listed under. */
  group?: string;
  /** Not listed in --help (deprecated spellings). */
  hidden?: boolean;
}

/** The value type an option spec yields. */
export type ValueOf<S extends OptionSpec> =
  S extends { list: true } ? ScalarOf<S>[] : ScalarOf<S>;
type ScalarOf<S extends OptionSpec> =
  S['type'] extends 'boolean' ? boolean
    : S['type'] extends 'number' | 'integer' ? (S extends { auto: true } ? number | 'auto' : number)
      : S['type'] extends 'choice' ? (S['choices'] extends readonly (infer C)[] ? C : string)
        : string;

/** Typed values of a list of specs: `name` → value; optional unless the spec has a default or is required. */
export type OptionValues<Specs extends readonly OptionSpec[]> = Simplify<
  { [S in Specs[number] as S extends { default: unknown } | { required: true } ? S['name'] : never]: ValueOf<S> } &
  { [S in Specs[number] as S extends { default: unknown } | { required: true } ? never : S['name']]?: ValueOf<S> }
>;
type Simplify<T> = { [K in keyof T]: T[K] };

/** Declares an option; `const` keeps its name, type and choices literal for the typed values. */
export function option<const S extends OptionSpec>(spec: S): S {
  return spec;
}

/** How an option is written on the command line: `--option`. */
export function flag(spec: Pick<OptionSpec, 'option'>): string {
  return `--${spec.option}`;
}

/** A UserError about one option; `option` is the spec's name (the key in the typed options). */
export class OptionError extends UserError {
  readonly option: string;
  constructor(spec: Pick<OptionSpec, 'name' | 'option'>, message: string) {
    super(message);
    this.name = 'OptionError';
    this.option = spec.name;
  }
}

/** What the range of a number option allows, in words ("a positive integer", "a number from 0 to 1"). */
export function describeRange(spec: OptionSpec): string {
  const kind = spec.type === 'integer' ? 'an integer' : 'a number';
  let r: string;
  if (spec.max !== undefined) r = `${kind} from ${spec.min ?? spec.above} to ${spec.max}`;
  else if (spec.above !== undefined) r = `${kind} > ${spec.above}`;
  else if (spec.min !== undefined) r = spec.type === 'integer' && spec.min === 1 ? 'a positive integer' : `${kind} >= ${spec.min}`;
  else r = kind;
  return spec.auto ? `${r} or auto` : r;
}

/** A value as a message shows it: text as is, numbers as JavaScript writes them (Infinity, not JSON's null), a list comma-separated, the rest as JSON. */
function shown(value: unknown): string {
  if (typeof value === 'number') return Number.isNaN(value) ? '(not a number)' : String(value);
  if (Array.isArray(value)) return value.map(shown).join(','); // a list as it is written on the command line
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/**
 * Checks one value of `spec` (a scalar, or one element of a list option) and returns it as its type
 * (numbers given as text are parsed). Throws an OptionError naming the option, the value and what it
 * must be. `typed` is what the user wrote, when known (shown instead of the parsed value).
 */
export function checkScalar(spec: OptionSpec, value: unknown, typed?: string): unknown {
  const bad = (what: string): never => {
    throw new OptionError(spec, `${flag(spec)} ${typed ?? shown(value)}: must be ${what}`);
  };
  switch (spec.type) {
    case 'boolean':
      if (typeof value !== 'boolean') bad('true or false');
      return value;
    case 'string':
      if (typeof value !== 'string') bad('text (quote it in a config file)');
      return value;
    case 'choice':
      if (typeof value !== 'string' || !spec.choices?.includes(value)) bad(`one of ${spec.choices?.join(', ')}`);
      return value;
    case 'number':
    case 'integer': {
      if (spec.auto && value === 'auto') return value;
      // text must be a plain decimal number (no hex, no blanks): integers in digits, others as JS writes them
      const pattern = spec.type === 'integer' ? /^[+-]?\d+$/ : /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
      const x = typeof value === 'number' ? value : typeof value === 'string' && pattern.test(value.trim()) ? Number(value) : NaN;
      const ok = Number.isFinite(x) && (spec.type !== 'integer' || Number.isInteger(x))
        && (spec.min === undefined || x >= spec.min) && (spec.above === undefined || x > spec.above)
        && (spec.max === undefined || x <= spec.max);
      if (!ok) bad(describeRange(spec));
      // beyond 2^53 − 1 the text no longer names one number (2^53 + 1 parses as 2^53): no count or size gets there
      if (spec.type === 'integer' && !Number.isSafeInteger(x)) bad(`${describeRange(spec)} up to ${Number.MAX_SAFE_INTEGER}`);
      return x;
    }
  }
}

/**
 * Checks a value of `spec` (a list option: an array or comma-separated text) and returns it typed.
 * `undefined` passes (absence is the caller's matter: defaults and required options).
 */
export function checkOption(spec: OptionSpec, value: unknown, typed?: string): unknown {
  if (value === undefined) return undefined;
  if (!spec.list) return checkScalar(spec, value, typed);
  const items = Array.isArray(value) ? value : typeof value === 'string' ? value.split(',').map((s) => s.trim()) : [value];
  if (items.some((x) => x === '')) {
    throw new OptionError(spec, `${flag(spec)} ${typed ?? shown(value)}: expected a comma-separated list without empty items${spec.default !== undefined ? `, e.g. ${String(spec.default)}` : ''}`);
  }
  return items.map((v) => checkScalar(spec, v, typed ?? shown(value)));
}

/** The spec's help line with its range, as --help shows it. */
export function helpText(spec: OptionSpec): string {
  const range = (spec.type === 'number' || spec.type === 'integer') && (spec.min !== undefined || spec.max !== undefined || spec.above !== undefined || spec.auto)
    ? ` (${describeRange(spec)})` : '';
  return `${spec.help}${range}`;
}

/**
 * The value of `spec` in `values` (an options object keyed by spec name), or its declared default when
 * it is not given (typed as the option parses it; a boolean without one is false), else undefined.
 */
export function valueOf(spec: OptionSpec, values: object): unknown {
  const v = (values as Record<string, unknown>)[spec.name];
  if (v !== undefined) return v;
  if (spec.default !== undefined) return checkOption(spec, spec.default);
  return spec.type === 'boolean' ? false : undefined;
}

/**
 * What a run key records of `specs` (keys of results, sweeps, queue jobs): each option's value, its
 * declared default when not given, null when it has neither, under the spec's name or the field `as`
 * gives it (a key's field from before its option was renamed, which existing results directories
 * hold). Derived from the declarations, so a changed default changes the key, as it changes the results.
 */
export function keyFields(specs: readonly OptionSpec[], values: object, as: Readonly<Record<string, string>> = {}): Record<string, unknown> {
  return Object.fromEntries(specs.map((s) => [as[s.name] ?? s.name, valueOf(s, values) ?? null]));
}

/** The fields of keyFields for only the options given a value other than their default (a key that grows only when they are set). */
export function changedFields(specs: readonly OptionSpec[], values: object): Record<string, unknown> {
  const unset = {};
  return Object.fromEntries(specs.filter((s) => JSON.stringify(valueOf(s, values)) !== JSON.stringify(valueOf(s, unset))).map((s) => [s.name, valueOf(s, values)]));
}
