/** Test models the export tests build themselves, and a loopback HTTP server for exported files. */
import { createServer, type Server } from 'node:http';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import { configToJson, expectedTensors, parseConfig } from '../src/model/config.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { atomicWriteDir } from '../src/io/atomic.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';

/** A tiny Llama-family config.json object; `overrides` replace fields. */
export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 96, hidden_size: 32,
    intermediate_size: 48, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2,
    max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
    bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float32', ...overrides,
  };
}

/** Writes a model directory with seeded random weights (norm weights near 1, biases small). */
export async function writeRandomModel(dir: string, overrides: Record<string, unknown> = {}, seed = 1): Promise<void> {
  const config = parseConfig(tinyConfigJson(overrides));
  const shapes = expectedTensors(config);
  const rand = mulberry32(seed);
  const values = (name: string): Float32Array => {
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    const isNorm = name.endsWith('norm.weight'), isBias = name.endsWith('.bias');
    const std = isNorm ? 0.1 : isBias ? 0.05 : name.includes('embed') ? 1 : 1 / Math.sqrt(shape[1]);
    for (let i = 0; i < n; i++) out[i] = (isNorm ? 1 : 0) + std * normal(rand);
    return out;
  };
  await atomicWriteDir(dir, async (tmp) => {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(configToJson(config), null, 2));
    writeFileSync(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
    await writeSafetensors(join(tmp, 'model.safetensors'), [...shapes].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const })), values);
  });
}

const TYPES: Record<string, string> = { '.json': 'application/json', '.bin': 'application/octet-stream', '.html': 'text/html', '.js': 'text/javascript' };

/** Serves files under `root` (and any extra absolute files by URL path) on 127.0.0.1; resolves with the base URL. */
export async function serveDir(root: string, extra: Record<string, string> = {}): Promise<{ url: string; server: Server; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    requests.push(path);
    const file = extra[path] ?? normalize(join(root, path));
    if (!extra[path] && !file.startsWith(normalize(root) + sep)) {
      res.statusCode = 403;
      res.end();
      return;
    }
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
      res.setHeader('Content-Type', TYPES[extname(file)] ?? 'application/octet-stream');
      res.end(readFileSync(file));
    } catch {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, server, requests };
}
