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
import { withValidation } from './validate.ts';
import { COMMANDS } from './commands/index.ts';
import { resolveHubArgs } from '../hub/args.ts';

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
  // Hub ids (--model org/name, --data cais/mmlu) become local paths first, so the checks see paths.
  const hub = globalOptions(yargs(argv))
    .option('revision', { type: 'string', describe: 'with a hub id as --model (org/name): its branch, tag or commit (default main)', group: 'Global:' })
    .middleware(resolveHubArgs);
  const configValues = config !== undefined ? loadConfigFile(config) : undefined;
  let y = withValidation(hub, argv, configValues)
    .scriptName('mka')
    .usage('$0 <command> [options]')
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
      const hint = /^Unknown arguments?: .*\b(backend|threads)\b/.test(line)
        ? `; ${command} computes nothing with tfjs: only commands that run a model take --backend and --threads` : '';
      process.stderr.write(`mka: ${line}${hint}${line.includes('(see --help)') ? '' : ' (see --help)'}\n`);
      process.exit(1);
    });
  if (configValues !== undefined) y = y.config(configValues);
  for (const c of COMMANDS) y = c.register(y);
  await y.parseAsync();
}

// A closed pipe on stdout (`mka info | head -1`) ends the run quietly; on stderr there is no one left to tell.
process.stdout.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' ? process.exit(0) : fail(e)));
process.stderr.on('error', () => process.exit(1));
process.on('unhandledRejection', fail);
main(hideBin(process.argv)).catch(fail);
