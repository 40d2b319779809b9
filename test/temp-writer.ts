/**
 * A process that is stopped while it writes, for test/cleanup.test.ts:
 *   node --import tsx test/temp-writer.ts MODE OUT [SWEEP]
 * It builds directory OUT with atomicWriteDir, says "ready" once the temporary directory holds a file, and
 * waits. MODE: "plain" (no signal handler of its own), "handles" (a command that stops itself on SIGINT:
 * its fill fails, the process exits with 130), "shared" (first records itself as a writer of sweep
 * directory SWEEP, as a --point run does).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWriteDir } from '../src/io/atomic.ts';
import { joinSharedOutput } from '../src/io/output-dir.ts';

const [mode, out, sweep] = process.argv.slice(2);
if (mode === 'shared') joinSharedOutput(sweep, 'sweep', 'test');
const stop = new AbortController();
if (mode === 'handles') process.on('SIGINT', () => stop.abort());
try {
  await atomicWriteDir(out, async (tmp) => {
    writeFileSync(join(tmp, 'part'), 'half');
    process.stdout.write('ready\n');
    await new Promise((_, reject) => {
      setInterval(() => {}, 1000); // keeps the process alive until a signal
      stop.signal.addEventListener('abort', () => reject(new Error('stopped')));
    });
  });
} catch {
  process.exit(130);
}
