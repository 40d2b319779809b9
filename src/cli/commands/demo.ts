import { readFileSync } from 'node:fs';
import { defineCommand } from '../options.ts';
import { FORCE_DIR, claimOutput, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { option } from '../../runtime/options.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { SWEEP_METHODS, SWEEP_REMOVE } from '../../sweep/options.ts';
import { LIMIT } from '../../eval/mmlu/options.ts';

const OUT = option({ ...OUT_SPEC, default: 'results/demo', help: 'results directory (rerun to resume)' });

export const demoCommand = defineCommand({
  command: 'demo',
  describe: 'The whole pipeline on the bundled demo model (what `npm start` runs): sweep, report, tfjs export',
  options: [...COMPUTE_OPTIONS, OUT, SWEEP_METHODS, { ...SWEEP_REMOVE, default: '0,2,3,4' }, { ...LIMIT, help: 'first N test questions per subject (default all 250)' }, FORCE_DIR],
  examples: [['$0 demo', '']],
  run: async (v, ctx) => {
    const { DEMO_DATA, DEMO_MODEL, runDemo } = await import('../../sweep/demo.ts');
    const release = claimOutput(v.out, 'demo', 'sweep', v.force, [...ctx.inputs, DEMO_MODEL, DEMO_DATA]);
    const backend = await setup({ ...v, quiet: ctx.quiet });
    await runDemo({
      out: v.out, methods: [...new Set(v.methods)], remove: [...new Set(v.remove)].sort((a, b) => a - b), limit: v.limit, quiet: ctx.quiet, log: ctx.log,
      runInfo: { backend: backend.description, argv: process.argv.slice(2) },
    });
    release();
    if (!ctx.json) process.stdout.write(readFileSync(`${v.out}/summary.md`, 'utf8'));
  },
});
