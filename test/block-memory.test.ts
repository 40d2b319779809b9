/**
 * What a pass through one decoder block holds, measured, against what the memory estimate counts
 * (src/model/memory-estimate.ts layerTokenBytes and scoreBytes): the block run op by op with a tap on
 * its projections, as the quantizers' calibration runs it, on two shapes — Llama-3-8B's proportions
 * (GQA 4:1, MLP 3.5×) and multi-head attention with a narrow MLP, where the attention is the larger part.
 * tf.profile's peak is the most bytes of tensors alive after any kernel of the pass.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { parseConfig, layerTensorShapes, type LlamaConfig } from '../src/model/config.ts';
import { runBlock } from '../src/model/forward.ts';
import { layerTokenBytes, scoreBytes } from '../src/model/memory-estimate.ts';
import { layerWeights } from '../src/quant/calibration.ts';
import { mulberry32 } from '../src/runtime/random.ts';
import { loadNativeAddon } from '../src/runtime/native-addon.ts';

const shape = (H: number, heads: number, kv: number, I: number): LlamaConfig => parseConfig({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: H, intermediate_size: I,
  num_attention_heads: heads, num_key_value_heads: kv, num_hidden_layers: 1, vocab_size: 32,
  max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
});

const NO_NATIVE = loadNativeAddon().addon ? false : 'native addon not built';
const shapes = [['Llama-3-8B proportions', shape(256, 8, 2, 896)], ['multi-head, narrow MLP', shape(128, 4, 4, 128)]] as const;
for (const backend of ['cpu', 'native'] as const) for (const [label, config] of shapes) {
  test(`${backend}: one block's pass holds no more than the estimate counts per token (${label})`, { skip: backend === 'native' && NO_NATIVE }, async () => {
    await initBackend(backend, { compute: 'float32' });
    const B = 2, T = 64, H = config.hidden_size;
    const random = mulberry32(7);
    const shapes = layerTensorShapes(config);
    const values = new Map([...shapes].map(([s, d]) => [s, Float32Array.from({ length: d.reduce((a, n) => a * n, 1) }, () => (random() - 0.5) * 0.2)]));
    const w = layerWeights(values, shapes);
    const x = tf.randomNormal([B, T, H], 0, 1, 'float32', 3) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    const start = tf.memory().numBytes;
    let taps = 0;
    const profile = await tf.profile(() => runBlock(config, w, x, () => { taps++; }));
    (profile.result as tf.Tensor).dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.equal(taps, 7, 'the tap saw every projection: the block ran op by op');
    const held = profile.peakBytes - start;
    // beside its input: the output, the RoPE tables, the per-token intermediates and the (whole) scores
    const counted = 4 * B * T * H + 4 * 2 * T * config.head_dim + B * T * layerTokenBytes(config)
      + scoreBytes(config, { blockedAttention: false }, B, T, T);
    assert.ok(held <= counted, `${label}: the pass held ${held} bytes (${(held / (B * T)).toFixed(0)} per token), the estimate counts ${counted}`);
    x.dispose();
    w.release();
  });
}
