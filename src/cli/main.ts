/**
 * The mka command line. Each command parses its options and calls one library function; errors the
 * user can fix print one line and exit 1, anything else exits 2 with a hint to report it.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { UserError } from '../runtime/errors.ts';
import { globalOptions } from './common.ts';
import { COMMANDS } from './commands/index.ts';
import { resolveHubArgs } from '../hub/args.ts';

function loadConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new UserError(`${path}: --config file not found`);
  }
  try {
    const v = path.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a mapping of option names to values');
    return v;
  } catch (e) {
    throw new UserError(`${path}: invalid --config file (${(e as Error).message})`);
  }
}

function fail(e: unknown): never {
  if (e instanceof UserError) {
    process.stderr.write(`mka: ${e.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`mka: internal error: ${(e as Error)?.stack ?? e}\nThis is a bug in mka: please report it with the command line above.\n`);
  process.exit(2);
}

/** Runs the CLI on `argv` (without node and script). */
export async function main(argv: string[]): Promise<void> {
  let y = globalOptions(yargs(argv))
    .scriptName('mka')
    .usage('$0 <command> [options]')
    .config('config', 'JSON or YAML file with option values', loadConfigFile)
    .option('revision', { type: 'string', describe: 'with a hub id as --model (org/name): its branch, tag or commit (default main)', group: 'Global:' })
    .middleware(resolveHubArgs)
    .strict()
    .demandCommand(1, 'name a command (see --help)')
    .recommendCommands()
    .wrap(null)
    .fail((msg, err) => {
      if (err) fail(err);
      process.stderr.write(`mka: ${msg} (see --help)\n`);
      process.exit(1);
    });
  for (const c of COMMANDS) y = y.command(c as never);
  await y.parseAsync();
}

process.on('unhandledRejection', fail);
main(hideBin(process.argv)).catch(fail);
