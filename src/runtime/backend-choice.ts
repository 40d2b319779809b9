/** The `--backend` and `--compute` choices and the compute options, apart from backend.ts so that parsing options does not load tfjs. */
import { option } from './options.ts';

/** The backends --backend names. */
export const BACKENDS = ['auto', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

/**
 * `--compute`: the dtype of the decoder's matrix products. bfloat16 rounds each product's inputs to
 * bf16 (weights once at load, activations per product) and accumulates in float32, as PyTorch's
 * autocast; norms, softmax, RoPE and the residual stream stay float32. auto: bfloat16 for BF16 models
 * on CPUs with bf16 products, float32 otherwise. Packed weights of weight-only methods (rtn, gptq, awq;
 * GGUF Q8_0/Q4_0/Q4_1) multiply as float32 rows of their dequantized values under auto and float32, as
 * the methods' papers and transformers compute them; int8 runs them on the integer kernels, which round
 * the activations to 8 bits per block of 32 as llama.cpp does (faster, other numbers). W8A8 weights
 * (smoothquant) take int8 activations per token under every choice: that is their method.
 */
export const COMPUTE_CHOICES = ['auto', 'float32', 'bfloat16', 'int8'] as const;
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
  help: 'dtype of the matrix products: bfloat16 rounds their inputs to bf16 and accumulates in float32 (norms, softmax, RoPE stay float32); auto: bfloat16 for BF16 models on CPUs with bf16 products (avx512_bf16, AMX), else float32; int8: packed 8/4-bit weights on the integer kernels, activations rounded to 8 bits per block of 32 as llama.cpp does (faster; otherwise they multiply as float32 rows of their dequantized values, the methods\' own numbers)',
});
/** The options of every command that runs a model. */
export const COMPUTE_OPTIONS = [BACKEND_OPTION, THREADS_OPTION, COMPUTE_OPTION] as const;
