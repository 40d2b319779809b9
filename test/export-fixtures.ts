/** A loopback HTTP server for exported files. */
import { createServer, type Server } from 'node:http';
import { readFileSync, statSync } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';

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
