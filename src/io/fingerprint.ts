/**
 * Fingerprints that tell one model's weights from another's: the sha256 of every byte of a file, read
 * in chunks (never whole into memory). Large files are hashed once per version: the digest is kept in
 * the user cache ($XDG_CACHE_HOME/mka/fingerprints.json) under the file's real path, size, mtime,
 * ctime and inode, so an edit (which changes mtime and ctime) is hashed again, and an unchanged file
 * costs a stat.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, readdirSync, readFileSync, readSync, realpathSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { atomicWriteText } from './atomic.ts';
import { openRegularFile } from './read.ts';

/** mka's user cache: $XDG_CACHE_HOME/mka, default ~/.cache/mka (fingerprints, the demo benchmark). */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'mka');
}

/** Files at least this large have their digest cached (smaller ones hash faster than a cache lookup). */
const CACHED_FROM = 64 * 2 ** 20;
const CHUNK = 16 * 2 ** 20;

interface CacheEntry {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  sha256: string;
}

const cacheFile = (env: NodeJS.ProcessEnv) => join(userCacheDir(env), 'fingerprints.json');

function readCache(env: NodeJS.ProcessEnv): Record<string, CacheEntry> {
  try {
    const c = JSON.parse(readFileSync(cacheFile(env), 'utf8')) as unknown;
    return typeof c === 'object' && c !== null && !Array.isArray(c) ? (c as Record<string, CacheEntry>) : {};
  } catch {
    return {};
  }
}

const sameVersion = (e: CacheEntry | undefined, st: Stats) => !!e && e.size === st.size && e.mtimeMs === st.mtimeMs && e.ctimeMs === st.ctimeMs && e.ino === st.ino && /^[0-9a-f]{64}$/.test(e.sha256);

/** The sha256 (hex) of every byte of file `path` (cached for large files, see the file comment). */
export function fileSha256(path: string, env: NodeJS.ProcessEnv = process.env): string {
  const fd = openRegularFile(path, 'weight file');
  try {
    const st = fstatSync(fd);
    const key = realpathSync(path);
    const cached = st.size >= CACHED_FROM ? readCache(env)[key] : undefined;
    if (sameVersion(cached, st)) return cached!.sha256;
    const h = createHash('sha256');
    const buf = Buffer.alloc(Math.min(CHUNK, Math.max(1, st.size)));
    for (let pos = 0; pos < st.size;) {
      const got = readSync(fd, buf, 0, buf.length, pos);
      if (got === 0) break;
      h.update(buf.subarray(0, got));
      pos += got;
    }
    const sha256 = h.digest('hex');
    if (st.size >= CACHED_FROM) {
      try {
        const cache = readCache(env);
        cache[key] = { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, sha256 };
        mkdirSync(userCacheDir(env), { recursive: true });
        atomicWriteText(cacheFile(env), JSON.stringify(cache) + '\n');
      } catch {
        // an unwritable cache only costs hashing again next time
      }
    }
    return sha256;
  } finally {
    closeSync(fd);
  }
}

/** Fingerprint of a model directory's weights: the whole contents of its safetensors files and index, by name. */
export function modelDirFingerprint(dir: string, env: NodeJS.ProcessEnv = process.env): string {
  const h = createHash('sha256');
  if (existsSync(join(dir, 'config.json'))) h.update('config.json').update(fileSha256(join(dir, 'config.json'), env));
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.safetensors') || f.endsWith('.safetensors.index.json')).sort()) {
    h.update(f).update(fileSha256(join(dir, f), env));
  }
  return h.digest('hex').slice(0, 32);
}
