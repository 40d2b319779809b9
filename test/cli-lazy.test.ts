/**
 * The CLI registers commands by name and description and imports a command's module only when it
 * runs: the registered name and description must be the module's own, and --help / info must not
 * load tfjs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { COMMANDS } from '../src/cli/commands/index.ts';

test('each lazily registered command has its module\'s name and description', async () => {
  for (const c of COMMANDS) {
    const m = await c.load();
    assert.equal(c.command, m.command, `commands/index.ts registers ${c.command} but the module says ${m.command}`);
    assert.equal(c.describe, m.describe, `commands/index.ts describes ${c.command} differently from its module`);
  }
});

test('mka --help and mka info do not load tfjs', () => {
  // Resolve hook that records every module loaded: run the CLI through tsx with it and look for tfjs.
  const hook = `data:text/javascript,${encodeURIComponent(`
    import { register } from 'node:module';
    register('data:text/javascript,' + encodeURIComponent('export async function load(u, c, n) { if (u.includes("@tensorflow")) process.stderr.write("LOADED " + u + "\\\\n"); return n(u, c); }'));
  `)}`;
  for (const args of [['--help'], ['info', '--model', 'models/demo']]) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--import', hook, 'src/cli/main.ts', ...args], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /LOADED/, `mka ${args.join(' ')} loaded tfjs:\n${r.stderr.slice(0, 500)}`);
  }
});
