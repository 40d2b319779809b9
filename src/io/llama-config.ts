/**
 * The type of a model's configuration: Hugging Face `config.json` field names, as model/config.ts
 * parses and checks them. Declared here, below both the model code and the GGUF code (whose
 * hyperparameters are these fields), so that each imports the one declaration. Types only, and the
 * model types mka runs.
 */
export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2'] as const;
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export interface RopeScaling {
  rope_type: 'default' | 'linear' | 'llama3';
  factor: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

/**
 * `quantization_config` of a model whose weights are packed by mka (src/io/packed.ts, README "Quantized
 * model directories"): the method and grid that made it, and act_bits 8 when the decoder's packed
 * linears take int8 activations (SmoothQuant W8A8). Other fields (calibration details) are kept as they are.
 */
export interface QuantizationConfig {
  quant_method: 'mka';
  method: string;
  bits: 4 | 8;
  /** Inputs per group, or -1 for one group per output channel. */
  group_size: number;
  sym: boolean;
  act_bits: 8 | null;
  /** The grids of packed tensors outside the decoder's (the embedding, lm_head), by Hugging Face weight name. */
  tables?: Record<string, PackedGrid>;
  [field: string]: unknown;
}

/** A packed tensor's grid as quantization_config states it (group_size -1: one group per output channel). */
export interface PackedGrid {
  bits: 4 | 8;
  group_size: number;
  sym: boolean;
}

export interface LlamaConfig {
  architectures: string[];
  model_type: ModelType;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  tie_word_embeddings: boolean;
  /** q/k/v/o biases (Qwen2 always has q/k/v biases; Llama's `attention_bias` adds them to all four). */
  attention_bias: boolean;
  mlp_bias: boolean;
  /** Mistral: a query at i sees keys j with i - window < j <= i. Null means full causal attention. */
  sliding_window: number | null;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  hidden_act: 'silu';
  torch_dtype: string;
  /** Set when weights are packed (quantized by mka); null for float checkpoints. */
  quantization_config: QuantizationConfig | null;
  /** Every other field of the original file, kept so a rewritten config.json loses nothing. */
  extra: Record<string, unknown>;
}
