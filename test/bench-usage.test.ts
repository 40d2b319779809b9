/**
 * The benchmarks' command line: `npm run bench -- scale` without the directory it may fill (a paper-shape
 * model is up to 16 GB) prints its usage and writes nothing, instead of a stack trace or a model in the
 * system temp directory; an unknown benchmark prints the list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const bench = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench.ts', ...args], { encoding: 'utf8' });

test('bench scale without --work or --model prints its usage; a --work inside the repository is refused', () => {
  for (const [args, needle] of [[['scale'], 'give --work DIR'], [['scale', '--work', 'results/scale'], 'inside the repository']] as const) {
    const r = bench(...args);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`^bench scale: .*${needle}.*\\nusage: npm run bench -- scale --work DIR`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const none = bench('nope');
  assert.equal(none.status, 1);
  assert.match(none.stderr, /^usage: npm run bench -- <[a-z0-9-]+(\|[a-z0-9-]+)+> \[options\]/);
});
