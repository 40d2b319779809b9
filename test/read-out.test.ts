import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../src/runtime/tf.ts';
import { tidyValues } from '../src/runtime/read-out.ts';

test('tidyValues reads what the tidy computation gives and leaves no tensor behind, also when it throws', async () => {
  await tf.setBackend('cpu');
  const before = tf.memory().numTensors;
  const a = tf.tensor2d([[1, 2], [3, 4]]);
  const got = tidyValues(() => tf.matMul(a, tf.add(a, 1)));
  assert.deepEqual(Array.from(got), [1 * 2 + 2 * 4, 1 * 3 + 2 * 5, 3 * 2 + 4 * 4, 3 * 3 + 4 * 5]);
  a.dispose();
  assert.throws(() => tidyValues(() => {
    tf.ones([3]);
    throw new Error('inside');
  }), /inside/);
  assert.equal(tf.memory().numTensors, before);
});
