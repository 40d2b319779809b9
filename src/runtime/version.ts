/** mka's own version, as its package.json states it (recorded in exports and sweep results). */
import { readFileSync } from 'node:fs';

/** The version field of mka's package.json. */
export function mkaVersion(): string {
  return String(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
}
