/**
 * The type of a command's parsed options, derived from its yargs builder, so the options a handler
 * reads are exactly the ones the builder declares (name, type, optional or defaulted).
 */
import type { Argv } from 'yargs';
import { UserError } from '../runtime/errors.ts';

/** What `builder` parses: `OptionsOf<typeof builder>` is the handler's argument type. */
export type OptionsOf<B> = B extends (y: never) => Argv<infer T> ? T : never;

/**
 * For commands that compute nothing with tfjs (info, convert-llama2c, export, serve): every command
 * takes --backend and --threads, but on these they would be accepted and do nothing, so one given on
 * the command line is refused. (A --config file may hold them for the commands that compute; there
 * they are left alone.)
 */
export function refuseComputeOptions(command: string, argv: readonly string[] = process.argv.slice(2)): void {
  for (const arg of argv) {
    if (arg === '--') break;
    const name = /^--(backend|threads)(?:=|$)/.exec(arg)?.[1];
    if (name) throw new UserError(`--${name}: ${command} computes nothing with tfjs (it reads and writes files in plain JavaScript), so --${name} would have no effect; drop it`);
  }
}
