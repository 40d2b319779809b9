/** The `--backend` and `--compute` choices, apart from backend.ts so that parsing options does not load tfjs. */
export const BACKENDS = ['auto', 'tensorflow', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

/**
 * `--compute`: the dtype of the decoder's matrix products. bfloat16 rounds each product's inputs to
 * bf16 (weights once at load, activations per product) and accumulates in float32, as PyTorch's
 * autocast; norms, softmax, RoPE and the residual stream stay float32. auto: bfloat16 for BF16 models
 * on CPUs with bf16 products, float32 otherwise.
 */
export const COMPUTE_CHOICES = ['auto', 'float32', 'bfloat16'] as const;
export type ComputeChoice = (typeof COMPUTE_CHOICES)[number];
export type ComputeDtype = Exclude<ComputeChoice, 'auto'>;
