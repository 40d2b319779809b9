/**
 * Start-up time of the CLI:
 *   npm run bench -- startup [--reps 5]
 * Wall time of `mka --help` and `mka info --model models/demo` as a user runs them (bin/mka.mjs, which
 * takes the compiled dist/ when it is fresh), of the same on the TypeScript sources through tsx, and of
 * `node -e 0` (the floor on this machine). Prints the median and the best of --reps runs, in ms.
 */
import yargs from 'yargs';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

function time(args: string[], reps: number): { median: number; best: number } {
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    ms.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)], best: ms[0] };
}

export async function main(argv: string[]): Promise<void> {
  const a = yargs(argv).strict().option('reps', { type: 'number', default: 5 }).parseSync();
  if (!existsSync('dist/BUILT')) process.stderr.write('dist/ is not built (npm run build): the bin rows run through tsx\n');
  const rows: [string, string[]][] = [
    ['node -e 0 (floor)', ['-e', '0']],
    ['mka --help', ['bin/mka.mjs', '--help']],
    ['mka info', ['bin/mka.mjs', 'info', '--model', 'models/demo']],
    ['mka --help (tsx, sources)', ['--import', 'tsx', 'src/cli/main.ts', '--help']],
    ['mka info (tsx, sources)', ['--import', 'tsx', 'src/cli/main.ts', 'info', '--model', 'models/demo']],
  ];
  process.stdout.write(`${'command'.padEnd(28)} ${'median'.padStart(8)} ${'best'.padStart(8)}\n`);
  for (const [name, args] of rows) {
    const t = time(args, a.reps);
    process.stdout.write(`${name.padEnd(28)} ${t.median.toFixed(0).padStart(5)} ms ${t.best.toFixed(0).padStart(5)} ms\n`);
  }
}
