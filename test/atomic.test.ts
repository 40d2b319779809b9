/**
 * Atomic writes: a directory is replaced whole, however fast its fill, and a failed fill leaves the
 * old contents and no temporary directory behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { atomicWriteDir } from '../src/io/atomic.ts';

test('atomicWriteDir replaces an existing directory, also when the fill takes under a millisecond', async () => {
  const root = mkdtempSync(join(tmpdir(), 'mka-atomic-'));
  try {
    const dir = join(root, 'out');
    for (let i = 0; i < 50; i++) {
      await atomicWriteDir(dir, async (tmp) => { writeFileSync(join(tmp, 'f'), String(i)); });
      assert.equal(readFileSync(join(dir, 'f'), 'utf8'), String(i));
    }
    await assert.rejects(atomicWriteDir(dir, async (tmp) => {
      writeFileSync(join(tmp, 'f'), 'half');
      throw new Error('fill failed');
    }), /fill failed/);
    assert.equal(readFileSync(join(dir, 'f'), 'utf8'), '49');
    assert.deepEqual(readdirSync(root), ['out']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
