/**
 * Running the mka command line on an argument list: each command parses its options and calls one
 * library function. A run ends with an exit code: 0 done, 1 for an error the user can fix (UserError,
 * a system error such as no space left or permission denied, a command-line mistake), said in one
 * line, 2 for anything else (a bug), with a hint to report it. src/cli/main.ts is the process around it.
 */
import yargs from 'yargs';
import YAML from 'yaml';
import { UserError, systemErrorMessage } from '../runtime/errors.ts';
import { describeJson, isPlainObject, parseJsonText, readTextFile } from '../io/read.ts';
import { globalOptions } from './common.ts';
import { CONFIG_VALUES, checkConfigKeys } from './options.ts';
import { COMMANDS } from './commands/index.ts';
import { noteGgufModels } from './gguf-note.ts';

/** The --config file named on the command line, if any (read before yargs, so its errors stay UserErrors). */
function configPath(argv: readonly string[]): string | undefined {
  let path: string | undefined;
  for (let i = 0; i < argv.length && argv[i] !== '--'; i++) {
    if (argv[i] === '--config') {
      if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) throw new UserError('--config needs a file path');
      path = argv[i + 1];
    } else if (argv[i].startsWith('--config=')) {
      path = argv[i].slice('--config='.length);
    }
  }
  if (path === '') throw new UserError('--config is empty; give the path of a JSON or YAML file');
  return path;
}

/** Reads a --config file: a JSON or YAML mapping of option names to values. */
function loadConfigFile(path: string): Record<string, unknown> {
  const what = '--config file';
  const text = readTextFile(path, what);
  let v: unknown;
  if (path.endsWith('.json')) {
    v = parseJsonText(text, path, what);
  } else {
    try {
      v = YAML.parse(text);
    } catch (e) {
      throw new UserError(`${path}: ${what} is not valid YAML (${(e as Error).message.split('\n')[0]})`);
    }
  }
  if (v === null || v === undefined) throw new UserError(`${path}: ${what} is empty; write option names and values, e.g. "model: models/demo"`);
  if (!isPlainObject(v)) throw new UserError(`${path}: ${what} must map option names to values, not hold ${describeJson(v)}`);
  return v;
}

/** Why a command refuses --backend or --threads, when `unknown` (the unknown option names) holds one. */
function computeHint(command: string, unknown: string): string {
  return /\b(backend|threads)\b/.test(unknown) ? `; ${command} computes nothing with tfjs: only commands that run a model take --backend and --threads` : '';
}

/** A command-line mistake yargs found, as the one line to print. */
class CommandLineError extends Error {}

/** Says what went wrong on stderr (one line for the user's errors) and returns the exit code: 1 the user's error, 2 a bug. */
export function reportError(e: unknown): 1 | 2 {
  const system = systemErrorMessage(e);
  if (e instanceof CommandLineError) {
    process.stderr.write(`mka: ${e.message}\n`);
    return 1;
  }
  if (e instanceof UserError || system !== null) {
    process.stderr.write(`mka: ${(system ?? (e as Error).message).split('\n')[0]}\n`);
    return 1;
  }
  if ((e as Error)?.name === 'YError') {
    // yargs' own errors are about the command line
    const line = (e as Error).message.split('\n')[0];
    process.stderr.write(`mka: ${line}${line.includes('(see --help)') ? '' : ' (see --help)'}\n`);
    return 1;
  }
  process.stderr.write(`mka: internal error: ${(e as Error)?.stack ?? e}\nThis is a bug in mka: please report it with the command line above.\n`);
  return 2;
}

/**
 * Runs the CLI on `argv` (without node and script) and returns its exit code, having said why when it
 * is not 0. `exitProcess: false` keeps --help and --version from exiting the process (tests run the CLI
 * in process so).
 */
export async function runCli(argv: string[], opts: { exitProcess?: boolean } = {}): Promise<number> {
  try {
    await parse(argv, opts.exitProcess ?? true);
    return 0;
  } catch (e) {
    return reportError(e);
  }
}

async function parse(argv: string[], exitProcess: boolean): Promise<void> {
  const config = configPath(argv);
  const configValues = config !== undefined ? loadConfigFile(config) : undefined;
  let y = globalOptions(yargs(argv))
    .scriptName('mka')
    .usage('$0 <command> [options]')
    .parserConfiguration({ 'camel-case-expansion': false }) // one spelling per option, in argv and in errors
    .strict()
    .demandCommand(1, 'name a command (see --help)')
    .recommendCommands()
    .wrap(null)
    .exitProcess(exitProcess)
    .fail((msg, err) => {
      if (err) throw err;
      // one line: yargs puts the option of a wrong choice on the lines after "Invalid values:"
      const line = msg.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
      const [name, sub] = argv.filter((a) => !a.startsWith('-'));
      const command = ['export', 'eval', 'queue'].includes(name) && sub ? `${name} ${sub}` : name;
      const hint = /^Unknown arguments?: /.test(line) ? computeHint(command, line) : '';
      throw new CommandLineError(`${line}${hint}${line.includes('(see --help)') ? '' : ' (see --help)'}`);
    });
  if (config !== undefined && configValues !== undefined) {
    // before yargs' own checks (a required option's absence among them): a misspelt key is reported as such
    y = y.config(configValues).middleware((argv: Record<string, unknown>, yi?: { getOptions(): { key: Record<string, unknown> } }) => {
      if (!yi) throw new Error('yargs called the config middleware without its instance');
      const command = (argv._ as unknown[]).map(String).join(' ');
      checkConfigKeys(configValues, config, command, Object.keys(yi.getOptions().key), (unknown) => computeHint(command, unknown.join(' ')));
    }, true).middleware((argv: Record<string, unknown>) => {
      argv[CONFIG_VALUES] = configValues; // for the checks that tell a --config value from the command line's (booleans)
    });
  }
  y = y.middleware(noteGgufModels);
  for (const c of COMMANDS) y = c.register(y);
  await y.parseAsync();
}
