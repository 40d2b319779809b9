/** The options of reading checkpoints (contract 5, src/runtime/options.ts): declared here, where the readers name them. */
import { option } from '../runtime/options.ts';

/** Reads weights holding NaN or ±Infinity instead of refusing them; every command takes it (a global option). */
export const ALLOW_NONFINITE = option({
  name: 'allowNonfinite', option: 'allow-nonfinite', type: 'boolean', group: 'Global:',
  help: 'read weights holding NaN or Infinity instead of refusing the checkpoint (sets MKA_ALLOW_NONFINITE=1)',
});
