/** Headless Chromium for the browser tests: where it is, and one page run to the result it reports. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const CHROMIUM = [process.env.CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p): p is string => !!p && existsSync(p));
export const NO_CHROMIUM = CHROMIUM ? false : 'Chromium is not installed (/usr/bin/chromium; Debian: apt-get install chromium): browser test skipped';

/**
 * A new directory for Chromium's own temporary files (org.chromium.*, which it leaves when killed). It
 * holds Chromium's singleton socket, whose path may not exceed 107 bytes: under the test's directory
 * (a private TMPDIR of the test run, a scratch directory) that limit is passed, and Chromium exits at
 * once. So it is made in /tmp where there is one, and removed with the profile.
 */
function chromiumTmp(tmp: string): string {
  return mkdtempSync(join(existsSync('/tmp') ? '/tmp' : tmp, 'mka-chromium-'));
}

/**
 * Opens `url` in headless Chromium (a fresh profile under `tmp`) and resolves with `result`, which the
 * page settles (e.g. by posting to the server). Rejects, with the end of Chromium's stderr, when
 * Chromium exits first or nothing comes within `timeoutMs`. Chromium and its helpers are killed and
 * the profile and its temporary files removed either way.
 */
export async function runInChromium<T>(url: string, result: Promise<T>, tmp: string, timeoutMs = 120_000): Promise<T> {
  const profile = mkdtempSync(join(tmp, 'profile-')), own = chromiumTmp(tmp);
  const child = spawn(CHROMIUM!, [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, url,
  ], {
    stdio: ['ignore', 'ignore', 'pipe'], detached: true, // own process group: its helpers end with it
    env: { ...process.env, TMPDIR: own },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const gone = new Promise<void>((ok) => child.on('exit', () => ok()));
  const exited = gone.then((): never => {
    throw new Error(`chromium exited (${child.exitCode}) before the page reported:\n${stderr.slice(-2000)}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result from the page within ${timeoutMs / 1000} s:\n${stderr.slice(-2000)}`)), timeoutMs);
  });
  try {
    return await Promise.race([result, exited, timeout]);
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      await gone;
    }
    for (const dir of [profile, own]) rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
}
