/**
 * The Hugging Face hub cache as Python's huggingface_hub lays it out, so either tool reuses the
 * other's downloads:
 *   $HF_HUB_CACHE (default $HF_HOME/hub, HF_HOME default $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface)
 *     models--org--name/                     (datasets--org--name for datasets)
 *       blobs/<etag>                         file contents: etag = sha256 (LFS files) or the git blob sha1
 *       blobs/<etag>.incomplete              a partial download, resumed by either tool
 *       refs/<revision>                      the commit sha a branch or tag pointed to
 *       snapshots/<commit sha>/<path>        relative symlinks to ../../blobs/<etag>
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';

export type RepoType = 'model' | 'dataset';

export interface RepoRef {
  type: RepoType;
  /** "org/name". */
  name: string;
}

/** The hub cache directory from the environment, as huggingface_hub computes it. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
  return join(home, 'hub');
}

/** The hub's base URL: $HF_ENDPOINT or https://huggingface.co; an HF_ENDPOINT that is not an http(s) URL is refused. */
export function hubEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.HF_ENDPOINT ?? 'https://huggingface.co';
  const url = given.replace(/\/+$/, '');
  let parsed: URL | null = null;
  try {
    parsed = new URL(url);
  } catch {
    // refused below
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '' || parsed.search || parsed.hash) {
    throw new UserError(`HF_ENDPOINT ${JSON.stringify(given.slice(0, 100))}: not an http(s) URL of a hub; set it to one (e.g. https://huggingface.co, or a mirror's address) or unset it`);
  }
  return url;
}

/** Whether HF_HUB_OFFLINE asks for no network (1, true, yes, on). */
export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  return /^(1|true|yes|on)$/i.test(env.HF_HUB_OFFLINE ?? '');
}

/** The access token: $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, or the file `huggingface-cli login` writes ($HF_HOME/token). */
export function hubToken(env: NodeJS.ProcessEnv = process.env, readToken: (file: string) => string | null): string | undefined {
  const t = env.HF_TOKEN ?? env.HUGGING_FACE_HUB_TOKEN ?? readToken(env.HF_TOKEN_PATH ?? join(env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface'), 'token'));
  return t?.trim() || undefined;
}

/** models--org--name (or datasets--org--name) under the cache. */
export function repoCacheDir(cache: string, repo: RepoRef): string {
  return join(cache, [`${repo.type}s`, ...repo.name.split('/')].join('--'));
}

/** A full commit sha (40 hex digits). */
export const COMMIT_SHA = /^[0-9a-f]{40}$/;
