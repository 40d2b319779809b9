/**
 * Tensor names and row order between Hugging Face checkpoints and llama.cpp's GGUF files
 * (gguf-py's tensor_mapping for the llama and qwen2 architectures).
 *
 * llama.cpp's llama architecture rotates adjacent pairs (q₀,q₁), (q₂,q₃), … while Hugging Face's Llama
 * rotates (qᵢ, qᵢ₊d/2) within each head of d dimensions, so its converter reorders the rows of q_proj
 * and k_proj (weights and biases) within each head: GGUF row 2j+s of a head is Hugging Face row
 * s·d/2 + j (convert_hf_to_gguf.py's `permute`). qwen2 uses llama.cpp's NeoX rotation, which is
 * Hugging Face's, and keeps the rows as they are.
 */

const LAYER_SUFFIXES: [string, string][] = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.q_proj.bias', 'attn_q.bias'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.k_proj.bias', 'attn_k.bias'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.v_proj.bias', 'attn_v.bias'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['self_attn.o_proj.bias', 'attn_output.bias'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.gate_proj.bias', 'ffn_gate.bias'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.up_proj.bias', 'ffn_up.bias'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
  ['mlp.down_proj.bias', 'ffn_down.bias'],
];
const GLOBAL: [string, string][] = [
  ['model.embed_tokens.weight', 'token_embd.weight'],
  ['model.norm.weight', 'output_norm.weight'],
  ['lm_head.weight', 'output.weight'],
];
const TO_GGUF_SUFFIX = new Map(LAYER_SUFFIXES);
const TO_HF_SUFFIX = new Map(LAYER_SUFFIXES.map(([h, g]) => [g, h]));
const TO_GGUF_GLOBAL = new Map(GLOBAL);
const TO_HF_GLOBAL = new Map(GLOBAL.map(([h, g]) => [g, h]));

/** The GGUF tensor llama.cpp's llama architecture takes the llama3 RoPE frequency factors from. */
export const ROPE_FREQS = 'rope_freqs.weight';

/** The GGUF name of a Hugging Face tensor name, or null when llama.cpp has none for it. */
export function ggufName(hf: string): string | null {
  const g = TO_GGUF_GLOBAL.get(hf);
  if (g) return g;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hf);
  const s = m && TO_GGUF_SUFFIX.get(m[2]);
  return s ? `blk.${m![1]}.${s}` : null;
}

/** The Hugging Face name of a GGUF tensor name, or null for tensors without one (rope_freqs, unknown ones). */
export function hfName(gguf: string): string | null {
  const h = TO_HF_GLOBAL.get(gguf);
  if (h) return h;
  const m = /^blk\.(\d+)\.(.+)$/.exec(gguf);
  const s = m && TO_HF_SUFFIX.get(m[2]);
  return s ? `model.layers.${m![1]}.${s}` : null;
}

/**
 * The number of heads whose rows llama.cpp's converter reorders in this Hugging Face tensor, or 0
 * when it keeps them: q_proj by the attention heads, k_proj by the key-value heads (llama only).
 */
export function permutedHeads(hf: string, arch: string, heads: number, kvHeads: number): number {
  if (arch !== 'llama') return 0;
  if (/\.self_attn\.q_proj\.(weight|bias)$/.test(hf)) return heads;
  if (/\.self_attn\.k_proj\.(weight|bias)$/.test(hf)) return kvHeads;
  return 0;
}

/**
 * Reorders the rows of a tensor held as `rows` rows of `rowBytes` bytes each (any element type, quantized
 * blocks included) in `heads` heads: `toGguf` from Hugging Face's order to llama.cpp's, else back.
 */
export function permuteRows(data: Uint8Array, rowBytes: number, heads: number, toGguf: boolean): Uint8Array {
  const rows = data.length / rowBytes;
  const d = rows / heads, half = d / 2;
  const out = new Uint8Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let s = 0; s < 2; s++) {
        const hfRow = h * d + s * half + j, ggufRow = h * d + 2 * j + s;
        const [from, to] = toGguf ? [hfRow, ggufRow] : [ggufRow, hfRow];
        out.set(data.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return out;
}
