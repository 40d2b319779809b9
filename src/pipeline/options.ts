/**
 * The options of `mka compress` that are not calibration's (compress/options.ts) or a method's (its
 * file): which method, how many layers, a recorded plan, the output dtype; declared once (contract 5,
 * src/runtime/options.ts).
 */
import { option } from '../runtime/options.ts';
import { METHODS } from '../compress/methods/registry.ts';
import { HF_DTYPE } from '../weights/options.ts';

/** The registered methods' names (the choices of --method and --methods). */
export const METHOD_NAMES: readonly string[] = METHODS.map((m) => m.name);

/** The method compress runs without --method (not the spec's default: --plan refuses a given --method). */
export const DEFAULT_METHOD = 'mka';
export const METHOD = option({ name: 'method', option: 'method', type: 'choice', choices: METHOD_NAMES, help: `compression method (default ${DEFAULT_METHOD})` });
export const REMOVE = option({ name: 'remove', option: 'remove', type: 'integer', min: 0, help: 'number of layers to remove (required unless --plan)' });
/** Declared with the model directories that record a plan (weights/options.ts), whose cards name it. */
export { PLAN } from '../weights/options.ts';
/** compress's --dtype: export hf's (HF_DTYPE), whose default a replayed plan replaces with the dtype it records. */
export const OUT_DTYPE = option({
  ...HF_DTYPE, help: 'storage dtype of the output (default: the source model\'s torch_dtype, else float32; with --plan, the dtype it records)',
});
export const FIT_LAMBDA = option({
  name: 'fitLambda', option: 'fit-lambda', type: 'boolean', group: 'Merging:',
  help: 'after planning, refit each merge\'s λ so the merged block best reproduces the original blocks on the calibration activations (1-D search, layer by layer)',
});
