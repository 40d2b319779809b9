// A node:test reporter used by scripts/run-tests.mjs: the wall time of each test file's process, as one
// JSON object (file → seconds), so the next run starts the slowest files first and the quick tier knows
// which files are quick. A file's time is its own `test:complete` event (the runner's per-file test, named
// by its path): the tests inside report scripts/test-guard.mjs as their file, since the guard calls test().
export default async function* durations(source) {
  const seconds = {};
  for await (const event of source) {
    const d = event.data;
    if (event.type === 'test:complete' && d.nesting === 0 && d.file && d.name === d.file) {
      seconds[d.file] = (d.details?.duration_ms ?? 0) / 1000;
    }
  }
  yield JSON.stringify(seconds);
}
