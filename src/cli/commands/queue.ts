import type { Argv, CommandModule } from 'yargs';
import type { ArgsOf, GlobalArgs } from '../common.ts';
import { formatQueueStatus, queueStatus } from '../../queue/status.ts';
import { DEFAULT_QUEUE_NAME } from '../../queue/connection.ts';

const statusBuilder = (y: Argv<GlobalArgs>) => y
  .option('queue', { type: 'string', demandOption: true, describe: 'Redis URL, e.g. redis://10.0.0.5:6379' })
  .option('queue-name', { type: 'string', default: DEFAULT_QUEUE_NAME, describe: 'BullMQ queue name' })
  .option('limit', { type: 'number', default: 50, describe: 'most jobs listed per state' })
  .example('$0 queue status --queue redis://10.0.0.5:6379', '');

const statusCommand: CommandModule<GlobalArgs, ArgsOf<typeof statusBuilder>> = {
  command: 'status',
  describe: 'Job counts, running jobs, failed jobs with their errors',
  builder: statusBuilder,
  handler: async (a) => {
    const s = await queueStatus({ url: a.queue, name: a['queue-name'], limit: a.limit });
    process.stdout.write(a.json ? JSON.stringify(s) + '\n' : formatQueueStatus(s));
  },
};

export const queueCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'queue',
  describe: 'State of a sweep queue (status)',
  builder: (y: Argv<GlobalArgs>) => y.command(statusCommand).demandCommand(1, 'name an action: status') as Argv<GlobalArgs>,
  handler: () => {},
};
