/**
 * A repository revision into the hub cache: resolve the revision to its commit (or, offline, read
 * refs/<revision>), list its files, choose the ones wanted, download each (resumable, verified,
 * with a progress bar) into blobs/ and link it from snapshots/<commit>/. Files already in the cache,
 * from mka or from Python's huggingface_hub, are not downloaded again.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { randomBytes } from 'node:crypto';
import { atomicWriteText } from '../io/atomic.ts';
import { joinInside } from '../io/paths.ts';
import { UserError } from '../runtime/errors.ts';
import { progress } from '../runtime/progress.ts';
import { COMMIT_SHA, hubCacheDir, hubEndpoint, hubOffline, hubToken, repoCacheDir, type RepoRef } from './cache.ts';
import { downloadBlob } from './download.ts';
import { flag } from '../runtime/options.ts';
import { DEFAULT_REVISION, REVISION } from '../model/options.ts';

/** A file of a repository revision as the hub lists it. */
export interface HubFile {
  path: string;
  size: number;
  /** Cache key: the LFS sha256, else the git blob sha1. */
  etag: string;
  lfs: boolean;
}

export interface SnapshotOptions {
  repo: RepoRef;
  /** Branch, tag or commit (default main). */
  revision?: string;
  /**
   * Chooses the files to fetch from the listing; may download small files first through `fetchFiles`
   * (e.g. an index naming the shards) and must return every path wanted.
   */
  select: (files: HubFile[], fetchFiles: (paths: string[]) => Promise<string>) => Promise<string[]>;
  /** Checks a cached snapshot offline (files the selection needs); throws UserError when unusable. */
  checkCached?: (dir: string) => void;
  env?: NodeJS.ProcessEnv;
  quiet?: boolean;
  log?: (msg: string) => void;
}

const readTokenFile = (file: string) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
};

const repoLabel = (repo: RepoRef) => (repo.type === 'model' ? repo.name : `datasets/${repo.name}`);

/** refs/<revision>: the file recording a branch or tag's commit; a revision that would leave refs/ is refused. */
function refFile(repoDir: string, revision: string): string {
  return joinInside(join(repoDir, 'refs'), revision, flag(REVISION));
}

/** The snapshot directory a cached revision resolves to, or null. */
function cachedSnapshot(repoDir: string, revision: string): string | null {
  let sha: string | null = revision;
  if (!COMMIT_SHA.test(revision)) {
    const ref = refFile(repoDir, revision);
    sha = existsSync(ref) && statSync(ref).isFile() ? readFileSync(ref, 'utf8').trim() : null;
  }
  return sha && COMMIT_SHA.test(sha) && existsSync(join(repoDir, 'snapshots', sha)) ? join(repoDir, 'snapshots', sha) : null;
}

/** A checksum the hub gave as a cache key: a git sha1 (40 hex digits) or an LFS sha256 (64). */
const ETAG = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/;

/** Links `link` (snapshots/<sha>/<path>) to the blob, as huggingface_hub does (relative symlink). */
function linkSnapshotFile(link: string, blob: string): void {
  mkdirSync(dirname(link), { recursive: true });
  const target = relative(dirname(link), blob);
  try {
    if (lstatSync(link).isSymbolicLink() && readlinkSync(link) === target) return;
  } catch {
    // no link yet
  }
  const tmp = `${link}.tmp-${randomBytes(4).toString('hex')}`;
  symlinkSync(target, tmp);
  try {
    renameSync(tmp, link);
  } catch (e) {
    rmSync(tmp, { force: true }); // a file or directory at the link's path: no stray link beside it
    throw e;
  }
}

function hubError(e: unknown, repo: RepoRef, revision: string): Error {
  const status = (e as { statusCode?: number }).statusCode;
  const what = `${repoLabel(repo)}${revision === DEFAULT_REVISION ? '' : `@${revision}`}`;
  if (status === 401 || status === 403) return new UserError(`${what}: the hub refused access (HTTP ${status}); for a gated or private ${repo.type} accept its terms on the hub and set HF_TOKEN`);
  if (status === 404) return new UserError(`${what}: not a local ${repo.type === 'model' ? 'directory' : 'path'}, and no such ${repo.type} or revision on the hub (HTTP 404); check the name and ${flag(REVISION)}`);
  return e as Error;
}

/** Downloads (or finds in the cache) the chosen files of a revision; returns the snapshot directory. */
export async function snapshot(opts: SnapshotOptions): Promise<string> {
  const env = opts.env ?? process.env;
  const revision = opts.revision ?? DEFAULT_REVISION;
  const repoDir = repoCacheDir(hubCacheDir(env), opts.repo);
  const label = repoLabel(opts.repo);
  refFile(repoDir, revision); // checks --revision before anything reads or writes with it
  if (hubOffline(env)) {
    const dir = cachedSnapshot(repoDir, revision);
    if (!dir) throw new UserError(`${label}: not in the hub cache (${repoDir}) and HF_HUB_OFFLINE is set; download it once with network, or unset HF_HUB_OFFLINE`);
    opts.checkCached?.(dir);
    return dir;
  }
  const hubUrl = hubEndpoint(env);
  const accessToken = hubToken(env, readTokenFile);
  const hub = await import('@huggingface/hub');
  let sha: string;
  let files: HubFile[];
  try {
    const info = opts.repo.type === 'model'
      ? await hub.modelInfo({ name: opts.repo.name, revision, hubUrl, accessToken, additionalFields: ['sha'] })
      : await hub.datasetInfo({ name: opts.repo.name, revision, hubUrl, accessToken, additionalFields: ['sha'] });
    sha = (info as { sha?: string }).sha ?? '';
    if (!COMMIT_SHA.test(sha)) throw new Error(`the hub gave no commit sha for revision ${revision}`);
    files = [];
    for await (const f of hub.listFiles({ repo: opts.repo, revision: sha, recursive: true, hubUrl, accessToken })) {
      if (f.type !== 'file') continue;
      const etag = f.lfs?.oid ?? f.oid;
      if (!etag) throw new Error(`the hub listed ${f.path} without a checksum`);
      if (!ETAG.test(etag)) throw new UserError(`${label}: the hub listed ${JSON.stringify(f.path)} with the checksum ${JSON.stringify(etag)}, which is not a sha1 or sha256; refused`);
      joinInside(join(repoDir, 'snapshots', sha), f.path, `${label}: the hub's file name`);
      files.push({ path: f.path, size: f.lfs?.size ?? f.size, etag, lfs: !!f.lfs });
    }
  } catch (e) {
    const status = (e as { statusCode?: number }).statusCode;
    const cached = status === undefined ? cachedSnapshot(repoDir, revision) : null;
    if (cached) {
      opts.log?.(`${label}: the hub is unreachable (${(e as Error).message}); using the cached snapshot ${cached}`);
      opts.checkCached?.(cached);
      return cached;
    }
    if (status === undefined && !(e instanceof UserError)) throw new UserError(`${label}: not a local path, and cannot reach the hub at ${hubUrl} (${(e as Error).message}); check the network, or set HF_HUB_OFFLINE=1 to use the cache only`);
    throw hubError(e, opts.repo, revision);
  }

  const snapshotDir = join(repoDir, 'snapshots', sha);
  const byPath = new Map(files.map((f) => [f.path, f]));
  const fetchFiles = async (paths: string[]): Promise<string> => {
    for (const p of paths) {
      const f = byPath.get(p);
      if (!f) throw new UserError(`${label}: has no file ${p} at ${sha.slice(0, 12)}`);
      const blob = joinInside(join(repoDir, 'blobs'), f.etag, `${label}: the hub's checksum`);
      if (!existsSync(blob)) {
        const bar = progress(`download ${p}`, f.size, { unit: 'bytes', quiet: opts.quiet });
        let last = 0;
        await downloadBlob({
          url: `${hubUrl}/${opts.repo.type === 'model' ? '' : 'datasets/'}${opts.repo.name}/resolve/${sha}/${p.split('/').map(encodeURIComponent).join('/')}`,
          blob, size: f.size, sha256: f.lfs ? f.etag : null, gitSha1: f.lfs ? null : f.etag, label: `${label}/${p}`,
        }, { token: accessToken, onBytes: (b) => { bar.tick(b - last); last = b; } });
        bar.done();
      }
      linkSnapshotFile(joinInside(snapshotDir, p, `${label}: the hub's file name`), blob);
    }
    return snapshotDir;
  };
  const wanted = await opts.select(files, fetchFiles);
  await fetchFiles(wanted);
  if (revision !== sha) {
    const ref = refFile(repoDir, revision);
    mkdirSync(dirname(ref), { recursive: true });
    atomicWriteText(ref, sha);
  }
  return snapshotDir;
}
