/**
 * One file from the hub into the cache's blobs/, resumable and verified: the bytes go to
 * blobs/<etag>.incomplete (continued with an HTTP Range request after a dropped connection or an
 * interrupted run, by mka or by Python's huggingface_hub), are checked against the hub's checksum
 * (sha256 for LFS files, the git blob sha1 otherwise) and the size, and only then renamed to
 * blobs/<etag>. A wrong checksum deletes the partial file and fails with a message.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, openSync, closeSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../runtime/errors.ts';

export interface BlobSpec {
  url: string;
  /** Final path: blobs/<etag>. */
  blob: string;
  size: number;
  /** sha256 hex of the contents (LFS files), else null. */
  sha256: string | null;
  /** git blob sha1 hex (non-LFS files), else null. */
  gitSha1: string | null;
  /** For messages: repo and path. */
  label: string;
}

export interface DownloadOptions {
  token?: string;
  /** Called with the bytes present so far (including resumed ones). */
  onBytes?: (bytes: number) => void;
  /** Attempts after a dropped connection or a server error (each resumes where the last stopped). */
  retries?: number;
  fetch?: typeof fetch;
}

async function hashFile(path: string, h: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
}

/** Downloads a blob unless already present; returns its path. */
export async function downloadBlob(spec: BlobSpec, opts: DownloadOptions = {}): Promise<string> {
  if (existsSync(spec.blob)) return spec.blob;
  mkdirSync(dirname(spec.blob), { recursive: true });
  const partial = `${spec.blob}.incomplete`;
  const doFetch = opts.fetch ?? fetch;
  const retries = opts.retries ?? 5;
  let lastError: unknown = null;
  for (let attempt = 0; attempt <= retries; attempt++) {
    let have = existsSync(partial) ? statSync(partial).size : 0;
    if (have > spec.size) {
      rmSync(partial);
      have = 0;
    }
    if (have === spec.size) break;
    if (attempt > 0) await new Promise((ok) => setTimeout(ok, Math.min(200 * 2 ** attempt, 5000)));
    let res: Response;
    try {
      res = await doFetch(spec.url, { headers: { ...(opts.token ? { Authorization: `Bearer ${opts.token}` } : {}), ...(have > 0 ? { Range: `bytes=${have}-` } : {}) }, redirect: 'follow' });
    } catch (e) {
      lastError = e;
      continue;
    }
    if (res.status === 401 || res.status === 403) throw new UserError(`${spec.label}: the hub refused the download (HTTP ${res.status}); for a gated or private model accept its terms on the hub and set HF_TOKEN`);
    if (res.status === 404) throw new UserError(`${spec.label}: not found on the hub (HTTP 404)`);
    if (res.status === 416) {
      rmSync(partial, { force: true });
      lastError = new Error('HTTP 416 for a resumed download');
      continue;
    }
    if (!res.ok || !res.body) {
      lastError = new Error(`HTTP ${res.status}`);
      await res.body?.cancel();
      continue;
    }
    const resumed = res.status === 206;
    const fd = openSync(partial, resumed ? 'a' : 'w');
    let bytes = resumed ? have : 0;
    opts.onBytes?.(bytes);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        writeSync(fd, chunk);
        bytes += chunk.length;
        opts.onBytes?.(bytes);
      }
    } catch (e) {
      lastError = e; // dropped connection: resume from what was written
    } finally {
      closeSync(fd);
    }
  }
  if (spec.size === 0 && !existsSync(partial)) closeSync(openSync(partial, 'w')); // an empty file needs no request
  const got = existsSync(partial) ? statSync(partial).size : 0;
  if (got !== spec.size) {
    throw new UserError(`${spec.label}: download incomplete (${got} of ${spec.size} bytes; ${(lastError as Error)?.message ?? 'no data'}); run the command again to resume`);
  }
  const h = createHash(spec.sha256 ? 'sha256' : 'sha1');
  if (!spec.sha256) h.update(`blob ${spec.size}\0`);
  await hashFile(partial, h);
  const digest = h.digest('hex');
  const want = spec.sha256 ?? spec.gitSha1;
  if (want && digest !== want) {
    rmSync(partial, { force: true });
    throw new UserError(`${spec.label}: checksum mismatch (${spec.sha256 ? 'sha256' : 'git sha1'} ${digest}, the hub says ${want}); the partial file was deleted: run the command again to download it anew`);
  }
  renameSync(partial, spec.blob);
  return spec.blob;
}
