import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { DEFAULT_ADDON_PATH } from '../src/runtime/native-addon.ts';

/** The addon mka loads: MKA_NATIVE_ADDON names another (a missing file forces the WebAssembly fallback). */
const ADDON = process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH;
const NOT_BUILT = !existsSync(ADDON) && 'native addon not built (npm run build:native needs a C compiler and make)';

/**
 * In a fresh process with the addon loaded: a 24 MiB array freed (which raises glibc's own mmap
 * threshold past 4 MiB), then how many bytes of a 4 MiB array glibc maps on their own (mallinfo2's
 * hblkhd, the addon's _malloc().mapped), or null where the C library is not glibc.
 */
function mappedAfterFree(env: NodeJS.ProcessEnv): number | null {
  const script = `
    const a = require(${JSON.stringify(ADDON)});
    (async () => {
      if (a._malloc().mapped < 0) return console.log('null');
      let big = new ArrayBuffer(24 << 20);
      new Uint8Array(big).fill(1);
      big = null;
      const floor = process.memoryUsage().arrayBuffers - (24 << 20);
      for (let i = 0; i < 1000 && process.memoryUsage().arrayBuffers > floor; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 10)); // V8 frees array buffers' memory off the main thread after a collection
      }
      const before = a._malloc().mapped;
      const keep = new ArrayBuffer(4 << 20);
      new Uint8Array(keep).fill(1);
      console.log(a._malloc().mapped - before);
    })();`;
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout.trim();
  return out === 'null' ? null : Number(out);
}

test('the native addon keeps blocks of 1 MiB and more mapped on their own, so freed tensors return their pages (glibc)', { skip: NOT_BUILT }, () => {
  const own = mappedAfterFree({ GLIBC_TUNABLES: undefined, MALLOC_MMAP_THRESHOLD_: undefined });
  if (own === null) return; // not glibc: nothing to tune
  assert.ok(own >= 4 << 20, `a 4 MiB array after a 24 MiB one was freed: ${own} bytes mapped on their own`);
  // the control: with a threshold of the environment's (here glibc's own, as GLIBC_TUNABLES is set), the addon leaves glibc's
  // dynamic threshold alone, which the freed 24 MiB raised, so the 4 MiB come from its heap
  assert.equal(mappedAfterFree({ GLIBC_TUNABLES: '', MALLOC_MMAP_THRESHOLD_: undefined }), 0);
});
