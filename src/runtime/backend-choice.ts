/** The `--backend` and `--compute` choices and the compute options, apart from backend.ts so that parsing options does not load tfjs. */
import { option } from './options.ts';

/** The backends --backend names. */
export const BACKENDS = ['auto', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

/**
 * `--compute`: the dtype of the decoder's matrix products. bfloat16 rounds each product's inputs to
 * bf16 (weights once at load, activations per product) and accumulates in float32, as PyTorch's
 * autocast; norms, softmax, RoPE and the residual stream stay float32. float32 multiplies packed
 * weights as float32 rows (the dequantized weights' products). auto: bfloat16 for BF16 models on CPUs
 * with bf16 products, float32 otherwise, and packed weights on the integer kernels, which round the
 * activations to 8 bits per block of 32 as llama.cpp does (W8A8 weights: per token, always).
 */
export const COMPUTE_CHOICES = ['auto', 'float32', 'bfloat16'] as const;
export type ComputeChoice = (typeof COMPUTE_CHOICES)[number];
export type ComputeDtype = Exclude<ComputeChoice, 'auto'>;

/** --backend: which tfjs backend runs the model (the commands that run one take it). */
export const BACKEND_OPTION = option({
  name: 'backend', option: 'backend', type: 'choice', choices: BACKENDS, default: 'auto', group: 'Compute:',
  help: 'tfjs backend: auto takes tensorflow, else native (cpu tensors + native kernels), else wasm, else cpu',
});
/** --threads: threads of the native kernels. */
export const THREADS_OPTION = option({ name: 'threads', option: 'threads', type: 'integer', min: 1, group: 'Compute:', help: 'threads for the native matrix products (default: all cores)' });
/** --compute: the dtype of the matrix products. */
export const COMPUTE_OPTION = option({
  name: 'compute', option: 'compute', type: 'choice', choices: COMPUTE_CHOICES, default: 'auto', group: 'Compute:',
  help: 'dtype of the matrix products: bfloat16 rounds their inputs to bf16 and accumulates in float32 (norms, softmax, RoPE stay float32); float32 also multiplies packed weights (mka quantize, GGUF Q8_0/Q4_0/Q4_1) as float32 rows, unrounded activations; auto: bfloat16 for BF16 models on CPUs with bf16 products (avx512_bf16, AMX), else float32, and packed weights on the integer kernels (activations rounded to 8 bits per block of 32, as llama.cpp does)',
});
/** The options of every command that runs a model. */
export const COMPUTE_OPTIONS = [BACKEND_OPTION, THREADS_OPTION, COMPUTE_OPTION] as const;
/**
 * --compute of the commands that show a model's own numbers (forward): float32 unless told, so their
 * logits are the checkpoint's (a packed or GGUF Q8_0/Q4_0 model's dequantized weights') as PyTorch
 * computes them, not the integer kernels' rounding of the activations nor bf16 products.
 */
export const EXACT_COMPUTE_OPTION = option({
  ...COMPUTE_OPTION, default: 'float32',
  help: 'dtype of the matrix products (default float32: the weights\' own logits, packed ones widened to float32, to compare with other implementations); auto: what eval runs (packed weights on integer kernels that round activations to 8 bits per block of 32 as llama.cpp does; bfloat16 for BF16 models on CPUs with bf16 products); bfloat16 rounds the products\' inputs to bf16',
});
/** COMPUTE_OPTIONS with EXACT_COMPUTE_OPTION. */
export const EXACT_COMPUTE_OPTIONS = [BACKEND_OPTION, THREADS_OPTION, EXACT_COMPUTE_OPTION] as const;
