/** The `--backend` choices and the compute options, apart from backend.ts so that parsing options does not load tfjs. */
import { option } from './options.ts';

/** The backends --backend names. */
export const BACKENDS = ['auto', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

/** --backend: which tfjs backend runs the model (the commands that run one take it). */
export const BACKEND_OPTION = option({
  name: 'backend', option: 'backend', type: 'choice', choices: BACKENDS, default: 'auto', group: 'Compute:',
  help: 'tfjs backend: auto takes tensorflow, else native (cpu tensors + native kernels), else wasm, else cpu',
});
/** --threads: threads of the native kernels. */
export const THREADS_OPTION = option({ name: 'threads', option: 'threads', type: 'integer', min: 1, group: 'Compute:', help: 'threads for the native matrix products (default: all cores)' });
/** The options of every command that runs a model. */
export const COMPUTE_OPTIONS = [BACKEND_OPTION, THREADS_OPTION] as const;
