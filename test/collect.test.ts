/**
 * collectGarbage (src/runtime/collect.ts): a dropped array is collected when it returns, not at V8's
 * next collection, also on a second call (the gc function is obtained again).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { collectGarbage } from '../src/runtime/collect.ts';

test('collectGarbage collects an unreachable array at once, every time it is called', async () => {
  for (let round = 0; round < 2; round++) {
    let a: Float64Array | null = new Float64Array(1 << 20).fill(1);
    const ref = new WeakRef(a);
    a = null;
    await tick(); // a WeakRef keeps its target through the job that made it
    collectGarbage();
    assert.equal(ref.deref(), undefined, `round ${round}`);
  }
});
