/**
 * The options of the output guard (contract 6), declared once (contract 5): the output a command
 * writes and --force. Commands give --out their own help (`{ ...OUT, help }`); the guard's messages
 * name the options through these specs.
 */
import { option } from '../runtime/options.ts';

/** A command's output (a directory, or a file for forward and similarity): each command adds its help, default and kind. */
export const OUT = option({ name: 'out', option: 'out', type: 'string', help: 'output directory' });

/** --force of the commands that write an output directory. */
export const FORCE_DIR = option({
  name: 'force', option: 'force', type: 'boolean', default: false,
  help: 'write --out even if it is a non-empty directory mka did not write (it may be replaced)',
});
/** --force of the commands that write an output file. */
export const FORCE_FILE = option({ ...FORCE_DIR, help: 'replace --out even if it is a file mka did not write (never an input)' });
