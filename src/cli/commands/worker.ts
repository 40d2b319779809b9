import { defineCommand } from '../options.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { LOCK_DURATION, MAX_STALLED, QUEUE_NAME, QUEUE_URL, ROOT, STALLED_INTERVAL } from '../../queue/options.ts';

export const workerCommand = defineCommand({
  command: 'worker',
  describe: 'Run sweep jobs from a Redis queue (start any number, on any machine sharing the results directory)',
  options: [...COMPUTE_OPTIONS, QUEUE_URL, QUEUE_NAME, LOCK_DURATION, STALLED_INTERVAL, MAX_STALLED, ROOT],
  examples: [['$0 worker --queue redis://10.0.0.5:6379', 'runs until Ctrl-C (finishes the job it runs first)']],
  run: async (v, ctx) => {
    const stop = new AbortController();
    const onSignal = () => {
      ctx.log('worker: finishing the running job, then stopping (press Ctrl-C again to stop at once)');
      stop.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const { runWorker } = await import('../../queue/worker.ts');
    await runWorker({ ...v, quiet: ctx.quiet, log: ctx.log, signal: stop.signal });
  },
});
