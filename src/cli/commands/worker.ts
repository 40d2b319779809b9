import type { Argv, CommandModule } from 'yargs';
import { type ArgsOf, type GlobalArgs, logger, computeOptions } from '../common.ts';
import { DEFAULT_LOCK_MS, runWorker } from '../../queue/worker.ts';
import { DEFAULT_QUEUE_NAME } from '../../queue/connection.ts';

const builder = (y: Argv<GlobalArgs>) => computeOptions(y)
  .option('queue', { type: 'string', demandOption: true, describe: 'Redis URL, e.g. redis://10.0.0.5:6379' })
  .option('queue-name', { type: 'string', default: DEFAULT_QUEUE_NAME, describe: 'BullMQ queue name (as given to mka sweep)' })
  .option('lock-duration', { type: 'number', default: DEFAULT_LOCK_MS, describe: 'ms a job stays locked without renewal: a dead worker\'s job is retried after this' })
  .option('stalled-interval', { type: 'number', default: 30_000, describe: 'ms between checks for jobs of dead workers' })
  .option('max-stalled', { type: 'number', default: 2, describe: 'times a job may be taken back from dead workers before it fails' })
  .option('root', { type: 'string', describe: 'directory every model, data and results path of a job must lie in; others are refused (default: the working directory)' })
  .example('$0 worker --queue redis://10.0.0.5:6379', 'runs until Ctrl-C (finishes the job it runs first)');

export const workerCommand: CommandModule<GlobalArgs, ArgsOf<typeof builder>> = {
  command: 'worker',
  describe: 'Run sweep jobs from a Redis queue (start any number, on any machine sharing the results directory)',
  builder,
  handler: async (a) => {
    const stop = new AbortController();
    const onSignal = () => {
      if (!a.quiet) process.stderr.write('worker: finishing the running job, then stopping (press Ctrl-C again to stop at once)\n');
      stop.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    await runWorker({
      url: a.queue, name: a['queue-name'], backend: a.backend, threads: a.threads, compute: a.compute, lockDuration: a['lock-duration'], stalledInterval: a['stalled-interval'],
      maxStalledCount: a['max-stalled'], quiet: a.quiet, log: logger(a), signal: stop.signal, root: a.root,
    });
  },
};
