import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../common.ts';
import { defineCommand } from '../options.ts';
import { QUEUE_NAME, QUEUE_URL, STATUS_LIMIT } from '../../queue/options.ts';

const statusCommand = defineCommand({
  command: 'status',
  describe: 'Job counts, running jobs, failed jobs with their errors',
  options: [QUEUE_URL, { ...QUEUE_NAME, help: 'BullMQ queue name' }, STATUS_LIMIT],
  examples: [['$0 queue status --queue redis://10.0.0.5:6379', '']],
  run: async (v, ctx) => {
    const { formatQueueStatus, queueStatus } = await import('../../queue/status.ts');
    const s = await queueStatus(v);
    process.stdout.write(ctx.json ? JSON.stringify(s) + '\n' : formatQueueStatus(s));
  },
});

export const queueCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'queue',
  describe: 'State of a sweep queue (status)',
  builder: (y: Argv<GlobalArgs>) => y.command(statusCommand).demandCommand(1, 'name an action: status') as Argv<GlobalArgs>,
  handler: () => {},
};
