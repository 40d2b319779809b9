/**
 * `mka serve`: a small HTTP server for an exported tfjs GraphModel: the generation page (page.ts),
 * stock tfjs' browser bundle, the tokenizer library and files, and the model's files. Everything the
 * page runs comes from this server; nothing is fetched from the network.
 */
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import type { AddressInfo } from 'node:net';
import { UserError } from '../runtime/errors.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { PAGE } from './page.ts';

export interface ServeOptions {
  /** The exported GraphModel directory (model.json + weight shards). */
  model: string;
  /** Directory with tokenizer.json (default: the export's, else the source model's recorded in model.json). */
  tokenizer?: string;
  port?: number;
  host?: string;
  /** Receives what the page posts to /api/result (tests); without it that route is 404. */
  onResult?: (result: Record<string, unknown>) => void;
}

export interface Serving {
  url: string;
  server: Server;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.bin': 'application/octet-stream' };

/** The directory whose tokenizer.json the page uses. */
function tokenizerDir(model: string, explicit: string | undefined, meta: Record<string, unknown>): string {
  if (explicit) {
    if (!existsSync(join(explicit, 'tokenizer.json'))) throw new UserError(`${explicit}: --tokenizer has no tokenizer.json`);
    return explicit;
  }
  if (existsSync(join(model, 'tokenizer.json'))) return model;
  const source = typeof meta.source_model === 'string' ? resolve(meta.source_model) : null;
  if (source && existsSync(join(source, 'tokenizer.json'))) return source;
  throw new UserError(`${model}: no tokenizer.json in the export${source ? ` or its source model ${source}` : ''}; pass --tokenizer DIR (the model directory it was exported from)`);
}

/** Starts serving; resolves once listening. */
export async function startServe(opts: ServeOptions): Promise<Serving> {
  const modelJson = join(opts.model, 'model.json');
  let parsed: { format?: string; userDefinedMetadata?: Record<string, unknown> };
  try {
    parsed = JSON.parse(readFileSync(modelJson, 'utf8'));
  } catch {
    throw new UserError(`${modelJson}: not found or not JSON; --model must be a directory written by \`mka export tfjs\``);
  }
  if (parsed.format !== 'graph-model') throw new UserError(`${modelJson}: not a tfjs GraphModel; --model must be a directory written by \`mka export tfjs\``);
  const meta = parsed.userDefinedMetadata ?? {};
  const tokDir = tokenizerDir(opts.model, opts.tokenizer, meta);
  const tok = await loadTokenizer(tokDir);
  const withBos = tok.encode('a'), without = tok.encode('a', { addBos: false });
  const config = {
    bos: tok.bos, addBos: withBos.length > without.length, eos: tok.eos, maxSeq: Number(meta.max_seq ?? 2048),
    description: `${String(meta.architecture ?? 'model')}, ${String(meta.num_hidden_layers ?? '?')} layers, ${meta.quantization && meta.quantization !== 'none' ? `${String(meta.quantization)}-quantized` : 'float32'} weights, from ${String(meta.source_model ?? opts.model)}`,
  };
  const require = createRequire(import.meta.url);
  const assets: Record<string, string> = {
    '/tf.min.js': join(dirname(require.resolve('@tensorflow/tfjs/package.json')), 'dist', 'tf.min.js'),
    '/tokenizers.mjs': join(dirname(require.resolve('@huggingface/tokenizers')), 'tokenizers.mjs'),
    '/tokenizer/tokenizer.json': join(tokDir, 'tokenizer.json'),
    '/tokenizer/tokenizer_config.json': join(tokDir, 'tokenizer_config.json'),
  };
  const modelRoot = normalize(resolve(opts.model));
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const send = (status: number, type: string, body: string | Buffer) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (req.method === 'POST' && path === '/api/result' && opts.onResult) {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        send(204, 'text/plain', '');
        try {
          opts.onResult!(JSON.parse(body));
        } catch {
          opts.onResult!({ error: `unparsable result: ${body.slice(0, 200)}` });
        }
      });
      return;
    }
    if (req.method !== 'GET') return send(405, 'text/plain', 'method not allowed');
    if (path === '/' || path === '/index.html') return send(200, TYPES['.html'], PAGE);
    if (path === '/api/config') return send(200, TYPES['.json'], JSON.stringify(config));
    let file: string | null = assets[path] ?? null;
    if (path === '/tokenizer/tokenizer_config.json' && !existsSync(file!)) return send(200, TYPES['.json'], '{}');
    if (!file && path.startsWith('/model/')) {
      const f = normalize(join(modelRoot, path.slice('/model/'.length)));
      if (f.startsWith(modelRoot + sep)) file = f;
    }
    try {
      if (!file || !statSync(file).isFile()) throw new Error('not a file');
      send(200, TYPES[extname(file)] ?? 'application/octet-stream', readFileSync(file));
    } catch {
      send(404, 'text/plain', 'not found');
    }
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'EADDRINUSE' ? new UserError(`--port ${opts.port}: already in use; choose another port (0 picks a free one)`) : e));
    server.listen(opts.port ?? 8080, host, ok);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    server,
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}
