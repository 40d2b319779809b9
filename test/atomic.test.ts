/**
 * Atomic writes: a directory is replaced whole, however fast its fill, and a failed fill leaves the
 * old contents and no temporary directory behind; a file is never written over a directory; a
 * directory written with a kind carries mka's output marker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWriteDir, atomicWriteFile, atomicWriteText } from '../src/io/atomic.ts';
import { MARKER_FILE, markerKind } from '../src/io/output-dir.ts';
import { UserError } from '../src/runtime/errors.ts';
import { scratchDir } from './scratch.ts';

test('atomicWriteDir replaces an existing directory, also when the fill takes under a millisecond', async () => {
  const root = scratchDir('atomic');
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

test('a file is not written over a directory, and no temporary file is left', async () => {
  const root = scratchDir('atomic');
  try {
    const dir = join(root, 'a-dir');
    mkdirSync(dir);
    assert.throws(() => atomicWriteText(dir, 'x'), (e) => e instanceof UserError && e.message.startsWith(dir));
    await assert.rejects(atomicWriteFile(dir, () => {}), (e) => e instanceof UserError);
    assert.deepEqual(readdirSync(root), ['a-dir']);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('atomicWriteDir with a kind writes the output marker inside the new directory', async () => {
  const root = scratchDir('atomic');
  try {
    const dir = join(root, 'out');
    await atomicWriteDir(dir, async (tmp) => { writeFileSync(join(tmp, 'model.json'), '{}'); }, 'tfjs-model');
    assert.equal(markerKind(dir), 'tfjs-model');
    assert.deepEqual(readdirSync(dir).sort(), [MARKER_FILE, 'model.json']);
    await atomicWriteDir(dir, async (tmp) => { writeFileSync(join(tmp, 'f'), ''); });
    assert.equal(markerKind(dir), null, 'no kind, no marker');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
