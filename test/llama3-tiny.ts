/**
 * A tiny Llama with the real Llama 3 tokenizer (128,256 tokens, BOS 128000 added as Meta's
 * tokenizer.json does), written deterministically from a seed: the model the lm-eval goldens in
 * test/goldens/lm-eval/ were computed on (test/goldens/lm-eval/make.py runs lm-evaluation-harness's own
 * HF model on the directory this writes). 2 layers, hidden 32, tied embeddings scaled so that the
 * logits spread over a few nats (random N(0, 1) embeddings make them far sharper than a trained model's).
 * About 16 MB of float32 on disk, so it is written into a temporary directory, never committed.
 *
 *   node --import tsx test/llama3-tiny.ts DIR     writes the model directory (for the golden script)
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configToJson, expectedTensors, parseConfig } from '../src/model/config.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { atomicWriteDir } from '../src/io/atomic.ts';
import { llama3TokenizerFiles } from '../scripts/make-paper-model.ts';
import { randomTensor } from './random-model.ts';

export const LLAMA3_TINY_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 32,
  intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
  max_position_embeddings: 2048, rms_norm_eps: 1e-5, rope_theta: 500000, tie_word_embeddings: true,
  bos_token_id: 128000, eos_token_id: 128001, torch_dtype: 'float32',
};

const SEED = 23;
/** Standard deviation of the embedding (and tied output) rows. */
const EMBED_STD = 0.25;

/** Writes the model directory: config.json, generation_config.json, model.safetensors, the Llama 3 tokenizer files. */
export async function writeLlama3Tiny(dir: string): Promise<void> {
  const config = parseConfig(LLAMA3_TINY_CONFIG);
  const shapes = expectedTensors(config);
  await atomicWriteDir(dir, async (tmp) => {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(configToJson(config), null, 2));
    writeFileSync(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: 128000, eos_token_id: 128001 }));
    for (const [name, text] of Object.entries(llama3TokenizerFiles())) writeFileSync(join(tmp, name), text);
    await writeSafetensors(join(tmp, 'model.safetensors'), [...shapes].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const })), (name) => {
      const t = randomTensor(name, shapes.get(name)!, SEED);
      if (name === 'model.embed_tokens.weight') for (let i = 0; i < t.length; i++) t[i] *= EMBED_STD;
      return t;
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: node --import tsx test/llama3-tiny.ts DIR');
  await writeLlama3Tiny(dir);
}
