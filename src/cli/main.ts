/**
 * The mka command line. Each command parses its options and calls one library function; errors the
 * user can fix (UserError, and system errors such as no space left or permission denied) print one
 * line and exit 1, anything else exits 2 with a hint to report it.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
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

function fail(e: unknown): never {
  const system = systemErrorMessage(e);
  if (e instanceof UserError || system !== null) {
    process.stderr.write(`mka: ${(system ?? (e as Error).message).split('\n')[0]}\n`);
    process.exit(1);
  }
  if ((e as Error)?.name === 'YError') {
    // yargs' own errors are about the command line
    const line = (e as Error).message.split('\n')[0];
    process.stderr.write(`mka: ${line}${line.includes('(see --help)') ? '' : ' (see --help)'}\n`);
    process.exit(1);
  }
  process.stderr.write(`mka: internal error: ${(e as Error)?.stack ?? e}\nThis is a bug in mka: please report it with the command line above.\n`);
  process.exit(2);
}

/** Runs the CLI on `argv` (without node and script). */
export async function main(argv: string[]): Promise<void> {
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
    .fail((msg, err) => {
      if (err) fail(err);
      // one line: yargs puts the option of a wrong choice on the lines after "Invalid values:"
      const line = msg.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
      const [name, sub] = argv.filter((a) => !a.startsWith('-'));
      const command = ['export', 'eval', 'queue'].includes(name) && sub ? `${name} ${sub}` : name;
      const hint = /^Unknown arguments?: /.test(line) ? computeHint(command, line) : '';
      process.stderr.write(`mka: ${line}${hint}${line.includes('(see --help)') ? '' : ' (see --help)'}\n`);
      process.exit(1);
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

// A closed pipe on stdout (`mka info | head -1`) ends the run quietly; on stderr there is no one left to tell.
process.stdout.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' ? process.exit(0) : fail(e)));
process.stderr.on('error', () => process.exit(1));
process.on('unhandledRejection', fail);
main(hideBin(process.argv)).catch(fail);
