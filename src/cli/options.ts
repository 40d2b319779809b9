/**
 * The type of a command's parsed options, derived from its yargs builder, so the options a handler
 * reads are exactly the ones the builder declares (name, type, optional or defaulted).
 */
import type { Argv } from 'yargs';

/** What `builder` parses: `OptionsOf<typeof builder>` is the handler's argument type. */
export type OptionsOf<B> = B extends (y: never) => Argv<infer T> ? T : never;
