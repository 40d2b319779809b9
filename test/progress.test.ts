import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { progress } from '../src/runtime/progress.ts';

/** A non-terminal stream that keeps what is written. */
function sink(): { stream: NodeJS.WriteStream; lines: () => string[] } {
  let text = '';
  const stream = { isTTY: false, write: (s: string) => { text += s; return true; } } as unknown as NodeJS.WriteStream;
  return { stream, lines: () => text.split('\n').filter(Boolean) };
}

test('progress prints count, percentage, rate, elapsed time and ETA; a slow stage reads as time per item', () => {
  mock.timers.enable({ apis: ['Date'], now: 0 });
  try {
    const fast = sink();
    const p = progress('eval', 100, { unit: 'questions', stream: fast.stream });
    mock.timers.tick(10_000);
    p.tick(40);
    assert.deepEqual(fast.lines(), [], 'a pipe gets no line before logEvery');
    p.done();
    assert.deepEqual(fast.lines(), ['eval: 40/100 (40.0%) 4.00 questions/s, elapsed 10s, ETA 15s']);

    const slow = sink();
    const q = progress('quantize gptq', 32, { unit: 'layers', stream: slow.stream, logEvery: 60 });
    mock.timers.tick(205_000);
    q.tick();
    q.done('layer 1');
    assert.deepEqual(slow.lines(), [
      'quantize gptq: 1/32 (3.1%) 3m25s per layer, elapsed 3m25s, ETA 1h45m',
      'quantize gptq: 1/32 (3.1%) 3m25s per layer, elapsed 3m25s, ETA 1h45m layer 1',
    ]);

    const quiet = sink();
    const r = progress('x', 1, { stream: quiet.stream, quiet: true });
    r.tick();
    r.done();
    assert.deepEqual(quiet.lines(), []);
  } finally {
    mock.timers.reset();
  }
});
