/**
 * `mka serve`: a small HTTP server for an exported tfjs GraphModel: the generation page (page.ts),
 * stock tfjs' browser bundle, the tokenizer library and files, and the model's files. Everything the
 * page runs comes from this server; nothing is fetched from the network.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { flag } from '../runtime/options.ts';
import { EXPORTED_MODEL, HOST, PORT, SERVE_TOKENIZER } from './options.ts';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { UserError } from '../runtime/errors.ts';
import { integer, literal, object, optional, readChecked, string } from '../io/schema.ts';
import { realInside, unsafeRelative } from '../io/paths.ts';
import { describeJson } from '../io/read.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { PAGE } from './page.ts';

export interface ServeOptions {
  /** The exported GraphModel directory (model.json + weight shards). */
  model: string;
  /** Directory with tokenizer.json (default: the export's, else the source model's recorded in model.json). */
  tokenizer?: string;
  port?: number;
  host?: string;
  /**
   * Receives what the page posts to /api/result (tests): a JSON object, or {error} saying why the body is
   * not one; without a listener that route is 405. A listener that throws makes the answer a 500.
   */
  onResult?: (result: Record<string, unknown>) => void;
  /** Longest time a client may take to send a whole request, in ms (default REQUEST_TIMEOUT_MS; tests shorten it). */
  requestTimeoutMs?: number;
}

export interface Serving {
  url: string;
  server: Server;
  close(): Promise<void>;
}

/** Longest request head accepted (larger ones get 431 from node's parser). */
const MAX_HEADER_BYTES = 16 * 1024;
/** Largest body /api/result accepts. */
export const MAX_RESULT_BYTES = 1 << 20;
/** Longest time a client may take to send a request (head and body): a slow or stalled sender is answered 408 and dropped. */
const REQUEST_TIMEOUT_MS = 30_000;

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.bin': 'application/octet-stream' };

/** The directory whose tokenizer.json the page uses. */
function tokenizerDir(model: string, explicit: string | undefined, meta: Record<string, unknown>): string {
  if (explicit) {
    if (!existsSync(join(explicit, 'tokenizer.json'))) throw new UserError(`${explicit}: ${flag(SERVE_TOKENIZER)} has no tokenizer.json`);
    return explicit;
  }
  if (existsSync(join(model, 'tokenizer.json'))) return model;
  const source = typeof meta.source_model === 'string' ? resolve(meta.source_model) : null;
  if (source && existsSync(join(source, 'tokenizer.json'))) return source;
  throw new UserError(`${model}: no tokenizer.json in the export${source ? ` or its source model ${source}` : ''}; pass ${flag(SERVE_TOKENIZER)} DIR (the model directory it was exported from)`);
}

/**
 * model.json as `mka export tfjs` writes it (src/export/graph-model.ts), the fields the server reads: the
 * format, and the metadata that names the source model (its tokenizer), the longest sequence and the
 * page's description. tfjs in the browser reads the rest.
 */
const GRAPH_MODEL_JSON = object({
  format: literal('graph-model'),
  userDefinedMetadata: optional(object({
    source_model: optional(string), max_seq: optional(integer), architecture: optional(string), num_hidden_layers: optional(integer),
    quantization: optional(string),
  })),
});

/** The decoded path of a request URL, or null when the URL or its percent-encoding is malformed. */
export function requestPath(url: string | undefined): string | null {
  try {
    const path = decodeURIComponent(new URL(url ?? '/', 'http://x').pathname);
    return path.includes('\0') ? null : path;
  } catch {
    return null;
  }
}

/** The real path of export file `rel`, when it is a plain path to a regular file inside the export (symlinks resolved). */
function modelFile(root: string, rel: string): string | null {
  if (unsafeRelative(rel) !== null) return null;
  const real = realInside(root, join(root, rel));
  return real && statSync(real).isFile() ? real : null;
}

/** Streams a file; a file that vanished or cannot be read is a 404. */
function sendFile(res: ServerResponse, file: string): void {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a file');
    size = st.size;
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
    return;
  }
  const stream = createReadStream(file);
  stream.once('open', () => {
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': size, 'Cache-Control': 'no-store' });
    if (res.req.method === 'HEAD') {
      stream.destroy();
      res.end();
    } else {
      stream.pipe(res);
    }
  });
  stream.once('error', () => {
    if (!res.headersSent) res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end();
  });
  res.once('close', () => stream.destroy());
}

/**
 * POST /api/result: reads a body of at most MAX_RESULT_BYTES (413 beyond, without reading on), answers 204
 * for a JSON object handed to `onResult`, 400 for anything else (`onResult` gets {error} saying what came), 500
 * when `onResult` throws. A client that stops mid-body is dropped by the server's request timeout.
 */
function receiveResult(req: IncomingMessage, res: ServerResponse, onResult: (result: Record<string, unknown>) => void): void {
  const answer = (status: number, body: string, close = false) => {
    if (res.headersSent) return;
    res.writeHead(status, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store', ...(close ? { Connection: 'close' } : {}) });
    res.end(body);
  };
  const tooLarge = () => {
    answer(413, `body larger than ${MAX_RESULT_BYTES} bytes`, true);
    req.removeAllListeners('data');
    req.resume(); // the rest is read and dropped until the connection closes after the answer
    res.once('finish', () => req.destroy());
  };
  req.on('error', () => req.destroy()); // a client gone mid-body
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_RESULT_BYTES) return tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (d: Buffer) => {
    size += d.length;
    if (size > MAX_RESULT_BYTES) return tooLarge();
    chunks.push(d);
  });
  req.on('end', () => {
    if (size > MAX_RESULT_BYTES) return;
    const body = Buffer.concat(chunks).toString('utf8');
    let value: unknown;
    let problem: string | null = null;
    try {
      value = JSON.parse(body);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) problem = `expected a JSON object, not ${describeJson(value)}`;
    } catch (e) {
      problem = `unparsable result (${(e as Error).message}): ${body.slice(0, 200)}`;
    }
    try {
      onResult(problem === null ? (value as Record<string, unknown>) : { error: problem });
    } catch {
      return answer(500, 'the result listener failed');
    }
    if (problem === null) answer(204, '');
    else answer(400, problem.split(/[\r\n]/)[0]);
  });
}

/** A one-line UserError for why the server cannot listen on host:port (the original error if none fits). */
function listenError(e: NodeJS.ErrnoException, host: string, port: number): Error {
  switch (e.code) {
    case 'EADDRINUSE': return new UserError(`${flag(PORT)} ${port}: already in use; choose another port (0 picks a free one)`);
    case 'EACCES': return new UserError(`${flag(PORT)} ${port}: not allowed for this user (ports below 1024 need privileges); choose another port`);
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EAI_NONAME':
      return new UserError(`${flag(HOST)} ${host}: not a known address; give an IP address such as 127.0.0.1 or 0.0.0.0, or a resolvable name`);
    case 'EADDRNOTAVAIL': case 'EAFNOSUPPORT': case 'EINVAL':
      return new UserError(`${flag(HOST)} ${host}: not an address of this machine (${e.code}); give one of its addresses, 127.0.0.1 or 0.0.0.0`);
    default: return e;
  }
}

/** Starts serving; resolves once listening. */
export async function startServe(opts: ServeOptions): Promise<Serving> {
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port <= 65535)) {
    throw new UserError(`${flag(PORT)} ${opts.port}: must be a whole number from 0 to 65535 (0 picks a free port)`);
  }
  const modelJson = join(opts.model, 'model.json');
  const fix = `${flag(EXPORTED_MODEL)} must be a directory written by \`mka export tfjs\``;
  if (!existsSync(modelJson)) throw new UserError(`${modelJson}: not found; ${fix}`);
  const meta = readChecked(modelJson, GRAPH_MODEL_JSON, 'tfjs GraphModel of mka export tfjs', fix).userDefinedMetadata ?? {};
  const tokDir = tokenizerDir(opts.model, opts.tokenizer, meta);
  const tok = await loadTokenizer(tokDir);
  const withBos = tok.encode('a'), without = tok.encode('a', { addBos: false });
  const config = {
    bos: tok.bos, addBos: withBos.length > without.length, eos: tok.eos, maxSeq: meta.max_seq ?? 2048,
    description: `${meta.architecture ?? 'model'}, ${meta.num_hidden_layers ?? '?'} layers, ${meta.quantization && meta.quantization !== 'none' ? `${meta.quantization}-quantized` : 'float32'} weights, from ${meta.source_model ?? opts.model}`,
  };
  const require = createRequire(import.meta.url);
  const assets = new Map<string, string>([
    ['/tf.min.js', join(dirname(require.resolve('@tensorflow/tfjs/package.json')), 'dist', 'tf.min.js')],
    ['/tokenizers.mjs', join(dirname(require.resolve('@huggingface/tokenizers')), 'tokenizers.mjs')],
    ['/tokenizer/tokenizer.json', join(tokDir, 'tokenizer.json')],
    ['/tokenizer/tokenizer_config.json', join(tokDir, 'tokenizer_config.json')],
  ]);
  const modelRoot = resolve(opts.model);
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const send = (status: number, type: string, body: string | Buffer) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    const path = requestPath(req.url);
    if (path === null) return send(400, 'text/plain', 'bad request: malformed URL');
    if (req.method === 'POST' && path === '/api/result' && opts.onResult) return receiveResult(req, res, opts.onResult);
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed');
    if (path === '/' || path === '/index.html') return send(200, TYPES['.html'], PAGE);
    if (path === '/api/config') return send(200, TYPES['.json'], JSON.stringify(config));
    if (path === '/tokenizer/tokenizer_config.json' && !existsSync(assets.get(path)!)) return send(200, TYPES['.json'], '{}');
    const file = assets.get(path) ?? (path.startsWith('/model/') ? modelFile(modelRoot, path.slice('/model/'.length)) : null);
    if (!file) return send(404, 'text/plain', 'not found');
    sendFile(res, file);
  };
  const requestTimeout = opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const server = createServer({
    maxHeaderSize: MAX_HEADER_BYTES, requestTimeout, headersTimeout: requestTimeout,
    connectionsCheckingInterval: Math.max(10, Math.min(1000, requestTimeout / 4)),
  }, (req, res) => {
    try {
      handle(req, res);
    } catch {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end('internal error');
    }
  });
  const host = opts.host ?? '127.0.0.1';
  const port0 = opts.port ?? PORT.default;
  await new Promise<void>((ok, fail) => {
    server.once('error', (e: NodeJS.ErrnoException) => fail(listenError(e, host, port0)));
    server.listen(port0, host, ok);
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
