/**
 * A Hugging Face hub look-alike on 127.0.0.1 for offline tests: the API routes @huggingface/hub
 * calls (revision info, recursive tree listing) and /resolve/ downloads with Range support, for
 * repositories held in memory. Faults on demand: a connection dropped half-way through a file,
 * wrong bytes for a file, a token required, a rewritten listing.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export interface FakeRepo {
  type: 'model' | 'dataset';
  name: string;
  /** Commit sha of main (and of every tag in `tags`). */
  sha: string;
  tags?: string[];
  files: Record<string, Buffer>;
  /** Paths stored as LFS (sha256 oid); the rest are plain git blobs (sha1 oid). */
  lfs?: (path: string) => boolean;
  /** Required bearer token. */
  token?: string;
  /** Paths whose first download is cut off half-way. */
  dropOnce?: Set<string>;
  /** Paths served with corrupted bytes (same size). */
  corrupt?: Set<string>;
  /** Rewrites the tree listing (a hostile hub: paths or checksums that would leave the cache). */
  tree?: (entries: ReturnType<typeof treeEntry>[]) => unknown[];
}

export interface FakeHub {
  url: string;
  /** Every request: method, path, Range header. */
  requests: { method: string; path: string; range?: string }[];
  close(): Promise<void>;
}

export const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function treeEntry(repo: FakeRepo, path: string) {
  const b = repo.files[path];
  const lfs = repo.lfs?.(path) ?? false;
  return { type: 'file', path, size: lfs ? 134 : b.length, oid: lfs ? gitSha1(Buffer.from(`pointer ${path}`)) : gitSha1(b), ...(lfs ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : {}) };
}

/** Starts the hub look-alike serving `repos`. */
export async function startFakeHub(repos: FakeRepo[]): Promise<FakeHub> {
  const requests: FakeHub['requests'] = [];
  const dropped = new Set<string>();
  const find = (type: string, name: string) => repos.find((r) => r.type === type && r.name === name);
  const authorized = (repo: FakeRepo, req: IncomingMessage) => !repo.token || req.headers.authorization === `Bearer ${repo.token}`;
  const revisionOk = (repo: FakeRepo, rev: string) => rev === 'main' || rev === 'HEAD' || rev === repo.sha || (repo.tags ?? []).includes(rev);
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const path = decodeURIComponent(url.pathname);
    requests.push({ method: req.method!, path, range: req.headers.range });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    let m = /^\/api\/(models|datasets)\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(path);
    if (m) {
      const repo = find(m[1].slice(0, -1), m[2]);
      if (!repo) return json(404, { error: 'Repository not found' });
      if (!authorized(repo, req)) return json(401, { error: 'Access to this repository is restricted' });
      if (!revisionOk(repo, m[4])) return json(404, { error: 'Revision not found' });
      if (m[3] === 'revision') return json(200, { _id: 'id', id: repo.name, sha: repo.sha, private: false });
      const entries = Object.keys(repo.files).sort().map((p) => treeEntry(repo, p));
      return json(200, repo.tree ? repo.tree(entries) : entries);
    }
    m = /^\/(datasets\/)?([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m) {
      const repo = find(m[1] ? 'dataset' : 'model', m[2]);
      if (!repo) return json(404, { error: 'Repository not found' });
      if (!authorized(repo, req)) return json(401, { error: 'Access to this repository is restricted' });
      const body = repo.files[m[4]];
      if (!body || !revisionOk(repo, m[3])) return json(404, { error: 'Entry not found' });
      const data = repo.corrupt?.has(m[4]) ? Buffer.from(body.map((x) => x ^ 0xff)) : body;
      const r = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const start = r ? Number(r[1]) : 0;
      if (start >= data.length) {
        res.writeHead(416);
        return res.end();
      }
      res.writeHead(r ? 206 : 200, { 'Content-Length': data.length - start, ...(r ? { 'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}) });
      const key = `${repo.name}/${m[4]}`;
      if (repo.dropOnce?.has(m[4]) && !dropped.has(key)) {
        dropped.add(key);
        res.write(data.subarray(start, start + Math.floor((data.length - start) / 2)), () => res.socket?.destroy());
        return;
      }
      return res.end(data.subarray(start));
    }
    json(404, { error: 'not found' });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}
