import type { Argv, CommandModule } from 'yargs';
import { readFileSync } from 'node:fs';
import { type ArgsOf, type GlobalArgs, claimOutput, forceOption, logger, setup, computeOptions } from '../common.ts';
import { DEMO_DATA, DEMO_MODEL, runDemo } from '../../sweep/demo.ts';
import { parseCounts, parseMethods } from '../validate.ts';
import { METHODS } from '../../compress/methods/registry.ts';

const builder = (y: Argv<GlobalArgs>) => forceOption(computeOptions(y))
  .option('out', { type: 'string', default: 'results/demo', describe: 'results directory (rerun to resume)' })
  .option('methods', { type: 'string', default: 'mka,reverse,shortgpt,angular', describe: 'comma-separated methods' })
  .option('remove', { type: 'string', default: '0,2,3,4', describe: 'layer counts to remove' })
  .option('limit', { type: 'number', describe: 'first N test questions per subject (default all 250)' })
  .example('$0 demo', '');

export const demoCommand: CommandModule<GlobalArgs, ArgsOf<typeof builder>> = {
  command: 'demo',
  describe: 'The whole pipeline on the bundled demo model (what `npm start` runs): sweep, report, tfjs export',
  builder,
  handler: async (a) => {
    const remove = parseCounts(a.remove);
    const methods = parseMethods(a.methods, METHODS.map((m) => m.name));
    const release = claimOutput(a.out, 'demo', 'sweep', a, DEMO_MODEL, DEMO_DATA);
    const backend = await setup(a);
    await runDemo({
      out: a.out, methods, remove, limit: a.limit, quiet: a.quiet, log: logger(a),
      runInfo: { backend: backend.description, argv: process.argv.slice(2) },
    });
    release();
    if (!a.json) process.stdout.write(readFileSync(`${a.out}/summary.md`, 'utf8'));
  },
};
