// A node:test reporter used by scripts/run-tests.mjs: sums the durations of each file's top-level tests
// and writes them as one JSON object (file → seconds), so the next run starts the slowest files first.
export default async function* durations(source) {
  const seconds = {};
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.nesting === 0 && event.data.file) {
      seconds[event.data.file] = (seconds[event.data.file] ?? 0) + (event.data.details?.duration_ms ?? 0) / 1000;
    }
  }
  yield JSON.stringify(seconds);
}
