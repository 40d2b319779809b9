/**
 * Peak memory and time of long-prompt forwards (issue #12 item 3):
 *   npm run bench -- long-prompt [--tokens 8000,32000] [--backend native] [--hidden 128 --layers 4 --heads 4 --kv-heads 2 --vocab 32000]
 * Each length runs in a child process of its own (a random-weight model with max_position_embeddings
 * 32768, one forward with the logits of the last position only) and reports its wall time and peak
 * resident set size (process.resourceUsage().maxRSS), so lengths do not share a heap.
 */
import yargs from 'yargs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initBackend, BACKENDS, type BackendChoice } from '../../src/runtime/backend.ts';
import { parseConfig } from '../../src/model/config.ts';
import { disposeModel } from '../../src/model/model.ts';
import { forward } from '../../src/model/forward.ts';
import { randomModel } from '../../test/random-model.ts';

interface Shape { hidden: number; layers: number; heads: number; kvHeads: number; vocab: number }

/** One forward of `tokens` tokens in this process; prints a JSON line. */
async function child(tokens: number, backend: BackendChoice, s: Shape): Promise<void> {
  const info = await initBackend(backend);
  const c = parseConfig({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: s.vocab, hidden_size: s.hidden,
    intermediate_size: 2 * s.hidden, num_hidden_layers: s.layers, num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads, max_position_embeddings: 32768,
  }, 'bench config');
  const model = randomModel(c);
  const ids = [Array.from({ length: tokens }, (_, t) => (7 * t + 1) % c.vocab_size)];
  const t0 = performance.now();
  const r = forward(model, ids, { logits: 'last' });
  r.logits!.dataSync();
  const seconds = (performance.now() - t0) / 1000;
  r.logits!.dispose();
  disposeModel(model);
  const maxRssMB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify({ tokens, backend: info.description, seconds, maxRssMB }) + '\n');
}

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict()
    .option('tokens', { type: 'string', default: '8000,32000', describe: 'prompt lengths, comma-separated' })
    .option('backend', { choices: BACKENDS, default: 'native' as BackendChoice })
    .option('hidden', { type: 'number', default: 128 })
    .option('layers', { type: 'number', default: 4 })
    .option('heads', { type: 'number', default: 4 })
    .option('kv-heads', { type: 'number', default: 2 })
    .option('vocab', { type: 'number', default: 32000 })
    .option('child', { type: 'number', hidden: true })
    .parseSync();
  const shape: Shape = { hidden: a.hidden, layers: a.layers, heads: a.heads, kvHeads: a['kv-heads'], vocab: a.vocab };
  if (a.child !== undefined) return child(a.child, a.backend, shape);
  console.log(`model: hidden ${shape.hidden}, layers ${shape.layers}, heads ${shape.heads}/${shape.kvHeads}, vocab ${shape.vocab}, max_position_embeddings 32768`);
  const bench = fileURLToPath(new URL('../bench.ts', import.meta.url));
  for (const tokens of a.tokens.split(',').map(Number)) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', bench, 'long-prompt', ...argv, '--child', String(tokens)], { encoding: 'utf8' });
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
    if (r.status !== 0 || !line) {
      console.log(`${tokens} tokens: failed (exit ${r.status}): ${r.stderr.trim().split('\n').at(-1)}`);
      continue;
    }
    const j = JSON.parse(line) as { backend: string; seconds: number; maxRssMB: number };
    console.log(`${tokens} tokens on ${j.backend}: ${j.seconds.toFixed(1)} s, peak RSS ${(j.maxRssMB / 1024).toFixed(2)} GB`);
  }
}
