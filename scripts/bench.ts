/**
 * Benchmark dispatcher: `npm run bench -- <name> [options]` runs scripts/bench/<name>.ts's main(argv).
 * Benchmarks print figures; nothing here asserts on time.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = join(dirname(fileURLToPath(import.meta.url)), 'bench');
const [name, ...rest] = process.argv.slice(2);
const names = readdirSync(here).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).sort();
if (!name || !existsSync(join(here, `${name}.ts`))) {
  process.stderr.write(`usage: npm run bench -- <${names.join('|')}> [options]\n`);
  process.exit(1);
}
const mod = await import(join(here, `${name}.ts`));
try {
  await mod.main(rest);
} catch (e) {
  // a mistake in the options: one line and the usage, not a stack
  if (!(e instanceof Error) || !('usage' in e)) throw e;
  process.stderr.write(`bench ${name}: ${e.message}\nusage: ${String(e.usage)}\n`);
  process.exit(1);
}
