/**
 * The CLI side of the option declarations (contract 5, src/runtime/options.ts): a command lists the
 * specs it takes (`defineCommand`), and everything else derives from them here: the yargs options and
 * their --help lines, the typed values the command's library call receives (required options, empty
 * values, options given twice, booleans, types, ranges, choices, and the paths they name), the inputs
 * the output guard protects, and the check of a --config file's keys (before anything else, so a typo
 * is reported as such). Every failure names the option as its spec spells it.
 */
import { existsSync, statSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { type OptionSpec, type OptionValues, OptionError, checkOption, flag, helpText } from '../runtime/options.ts';
import { UserError } from '../runtime/errors.ts';
import { isGgufFile } from '../gguf/reader.ts';

/** The global options every command's handler receives. */
export interface GlobalArgs {
  json: boolean;
  quiet: boolean;
}

/** What a command's `run` receives besides its values. */
export interface RunContext extends GlobalArgs {
  /** The --config file, if given. */
  config?: string;
  /** Prints a line on stderr unless --quiet. */
  log: (msg: string) => void;
  /** The paths the command reads (its file and directory options, and the --config file): an output may not be one of them. */
  inputs: string[];
}

export interface CommandDef<S extends readonly OptionSpec[]> {
  command: string;
  describe: string;
  /** The command's options, in the order --help lists them. */
  options: S;
  examples?: readonly (readonly [string, string])[];
  usage?: string;
  epilogue?: string;
  /** Pairs of options that exclude each other. */
  conflicts?: readonly (readonly [OptionSpec, OptionSpec])[];
  /** Checks across options (throws a UserError), after each option's own checks, before hub ids are resolved and paths checked. */
  check?(values: OptionValues<S>): void;
  run(values: OptionValues<S>, ctx: RunContext): Promise<void> | void;
}

/** A yargs command module whose options, checks and typed values derive from `def.options`. */
export type DefinedCommand<S extends readonly OptionSpec[] = readonly OptionSpec[]> = CommandModule<GlobalArgs, GlobalArgs> & { def: CommandDef<S> };

/** The yargs command of a command definition. */
export function defineCommand<const S extends readonly OptionSpec[]>(def: CommandDef<S>): DefinedCommand<S> {
  return {
    def,
    command: def.command,
    describe: def.describe,
    builder: (y: Argv<GlobalArgs>) => {
      let b = declareOptions(y, def.options);
      if (def.usage) b = b.usage(def.usage);
      if (def.epilogue) b = b.epilogue(def.epilogue);
      for (const [a, c] of def.conflicts ?? []) b = b.conflicts(a.option, c.option);
      for (const [example, what] of def.examples ?? []) b = b.example(example, what);
      return b;
    },
    handler: async (argv) => {
      const args = argv as unknown as Record<string, unknown>;
      const quiet = args.quiet === true;
      const values = valuesOf(def.options, args, process.argv.slice(2), configValues(args));
      def.check?.(values);
      await resolveHubIds(def.options, values as Record<string, unknown>, quiet);
      checkPaths(def.options, values as Record<string, unknown>);
      await def.run(values, {
        json: args.json === true, quiet, config: typeof args.config === 'string' ? args.config : undefined,
        log: (msg) => { if (!quiet) process.stderr.write(`${msg}\n`); },
        inputs: [...inputPaths(def.options, values as Record<string, unknown>), ...(typeof args.config === 'string' ? [args.config] : [])],
      });
    },
  };
}

/** The --config file's values, as main.ts hands them to yargs (kept on argv for the checks that need to know a value's source). */
function configValues(argv: Record<string, unknown>): Record<string, unknown> {
  const c = argv[CONFIG_VALUES];
  return c && typeof c === 'object' ? (c as Record<string, unknown>) : {};
}

/** Where main.ts leaves the --config file's values on argv (not an option: yargs passes it through). */
export const CONFIG_VALUES = '$config-values';

/** Adds `specs` to a yargs builder as options, for parsing and --help; `valuesOf` checks them. */
export function declareOptions<T>(y: Argv<T>, specs: readonly OptionSpec[]): Argv<T> {
  for (const s of specs) {
    const choices = s.choices ? ` (${s.choices.join(' | ')})` : '';
    y = y.option(s.option, {
      // everything but booleans reaches valuesOf as typed (numbers, lists and `auto` are parsed there)
      type: s.type === 'boolean' ? 'boolean' : 'string',
      describe: `${helpText(s)}${choices}${s.required ? ' [required]' : ''}`,
      ...(s.default !== undefined ? { default: s.default } : {}),
      ...(s.group ? { group: s.group } : {}),
      ...(s.hidden ? { hidden: true } : {}),
    }) as Argv<T>;
  }
  return y;
}

/** What the user wrote for `--option` on the command line (`--option v` or `--option=v`), if there. */
function typedValue(raw: readonly string[], option: string): string | undefined {
  for (let i = raw.length - 1; i >= 0; i--) {
    if (raw[i] === `--${option}`) return raw[i + 1];
    if (raw[i].startsWith(`--${option}=`)) return raw[i].slice(option.length + 3);
  }
  return undefined;
}

/** Whether `--option=` or `--option ""` is on the command line. */
function givenEmpty(raw: readonly string[], option: string): boolean {
  return raw.some((t, i) => t === `--${option}=` || (t === `--${option}` && raw[i + 1] === ''));
}

function checkPath(spec: OptionSpec, path: string): void {
  const kind = spec.path;
  if (kind !== 'file' && kind !== 'directory' && kind !== 'model') return; // output files are checked when the command claims them
  if (!existsSync(path)) throw new OptionError(spec, `${path}: ${flag(spec)} not found; give an existing ${kind === 'model' ? 'model directory or GGUF file' : kind}`);
  const st = statSync(path);
  if (kind === 'model') {
    if (!st.isDirectory() && !(st.isFile() && isGgufFile(path))) throw new OptionError(spec, `${path}: ${flag(spec)} is a file but not a GGUF model file; give a model directory or a .gguf file`);
    return;
  }
  if (kind === 'directory' && !st.isDirectory()) throw new OptionError(spec, `${path}: ${flag(spec)} is a file, but must be a directory`);
  if (kind === 'file' && st.isDirectory()) throw new OptionError(spec, `${path}: ${flag(spec)} is a directory, but must be a file`);
  if (kind === 'file' && !st.isFile()) throw new OptionError(spec, `${path}: ${flag(spec)} is not a regular file (a FIFO, socket or device); give a regular file`);
}

/**
 * The typed values of `specs` from parsed arguments (`argv`, keyed by option spelling), checked:
 * required ones given, no empty or repeated values, booleans true or false, each value of its type and
 * range (paths: checkPaths, once hub ids are resolved). `raw` is the command line (what the user typed
 * is shown in messages), `config` the --config file's values.
 */
export function valuesOf<const S extends readonly OptionSpec[]>(specs: S, argv: Record<string, unknown>, raw: readonly string[] = [], config: Record<string, unknown> = {}): OptionValues<S> {
  const values: Record<string, unknown> = {};
  for (const s of specs) {
    let v = argv[s.option];
    if (!s.empty && (givenEmpty(raw, s.option) || v === '')) throw new OptionError(s, `${flag(s)} is empty; give it a value or leave it out`);
    if (Array.isArray(v)) throw new OptionError(s, `${flag(s)} is given more than once (or as a list in --config); give it once${s.list ? ', its values separated by commas' : ''}`);
    if (v === null) throw new OptionError(s, `${flag(s)} has no value (null in --config?); give it a value or leave it out`);
    if (s.type === 'boolean') {
      const typed = raw.find((t) => t.startsWith(`--${s.option}=`) || t.startsWith(`--no-${s.option}=`));
      if (typed && !/=(true|false)$/.test(typed)) throw new OptionError(s, `${typed}: must be true or false (or leave out the value)`);
      if (s.option in config && typeof config[s.option] !== 'boolean') {
        throw new OptionError(s, `${flag(s)} ${JSON.stringify(config[s.option])} in --config: must be true or false (YAML's yes/no/on/off are text)`);
      }
    }
    if (v === undefined) {
      if (s.required) throw new OptionError(s, `${flag(s)} is required: ${s.help}`);
      continue;
    }
    if (s.list && typeof v === 'number') v = String(v);
    values[s.name] = checkOption(s, v, typedValue(raw, s.option));
  }
  return values as OptionValues<S>;
}

/** Checks the paths among `values` (after hub ids became local paths): inputs exist and are of their kind. */
export function checkPaths(specs: readonly OptionSpec[], values: Record<string, unknown>): void {
  for (const s of specs) {
    if (s.path && typeof values[s.name] === 'string') checkPath(s, values[s.name] as string);
  }
}

/**
 * Replaces values naming a hub model (org/name, not a local path) by their cached snapshot directory
 * (with the --revision value, when the command takes one), and values naming a hub dataset in
 * cais/mmlu's layout by its local CSV directory, downloading what is missing.
 */
async function resolveHubIds(specs: readonly OptionSpec[], values: Record<string, unknown>, quiet: boolean): Promise<void> {
  const hubSpecs = specs.filter((s) => s.hub && typeof values[s.name] === 'string');
  if (!hubSpecs.length) return;
  const common = { quiet, log: (m: string) => { if (!quiet) process.stderr.write(`${m}\n`); } };
  const revision = typeof values.revision === 'string' ? values.revision : undefined;
  for (const s of hubSpecs) {
    const v = values[s.name] as string;
    if (s.hub === 'model') values[s.name] = await (await import('../hub/model.ts')).resolveModelDir(v, { ...common, revision });
    else values[s.name] = await (await import('../hub/mmlu.ts')).resolveMmluData(v, common);
  }
}

/** The values of the file and directory options among `specs`: what an output must not overwrite. */
export function inputPaths(specs: readonly OptionSpec[], values: Record<string, unknown>): string[] {
  return specs.filter((s) => (s.path === 'file' || s.path === 'directory' || s.path === 'model') && typeof values[s.name] === 'string' && values[s.name] !== '')
    .map((s) => values[s.name] as string);
}

/**
 * Refuses keys of a --config file that the command does not take, naming the file: called before
 * yargs checks the command line, so a misspelt key is reported as such and not as a missing option.
 */
export function checkConfigKeys(config: Record<string, unknown>, path: string, command: string, known: Iterable<string>, hint = (_unknown: string[]) => ''): void {
  const take = new Set(known);
  const unknown = Object.keys(config).filter((k) => !take.has(k));
  if (!unknown.length) return;
  const near = (k: string) => [...take].find((t) => t.replace(/-/g, '') === k.replace(/[-_]/g, '').toLowerCase() || editDistance(t, k) <= 2);
  const hints = unknown.map((k) => (near(k) ? `${k} (did you mean ${near(k)}?)` : k));
  throw new UserError(`${path}: --config ${unknown.length > 1 ? 'keys' : 'key'} ${hints.join(', ')} ${unknown.length > 1 ? 'are not options' : 'is not an option'} of mka ${command}${hint(unknown)} (see mka ${command} --help)`);
}

/** Levenshtein distance of two short strings. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}
