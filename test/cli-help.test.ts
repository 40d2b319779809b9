/**
 * Every command's --help (defaults and examples shown; the CLI run in this process, as src/cli/run.ts),
 * the command list against the README's table, and the CLI process's exit codes: 0 ok, 1 user error on one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { LM_EVAL_TASKS } from '../src/eval/tasks/registry.ts';
import { runCliInProcess } from './cli-run.ts';

const CLI = join(process.cwd(), 'bin', 'mka.mjs');
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
const help = (...args: string[]) => runCliInProcess([...args, '--help']);

/** Commands listed in a --help page's "Commands:" section. */
function commandsIn(help: string): string[] {
  const section = help.split(/\n\n/).find((s) => s.startsWith('Commands:')) ?? '';
  return section.split('\n').slice(1).map((l) => l.trim().split(/\s+/).slice(1, 3)).map(([a, b]) => (b && !b.startsWith('<') && !b.startsWith('[') && !/^[A-Z]/.test(b) ? `${a} ${b}` : a)).filter(Boolean);
}

async function leafCommands(): Promise<string[]> {
  const top = commandsIn((await help()).stdout);
  const leaves: string[] = [];
  for (const c of top) {
    const sub = commandsIn((await help(c)).stdout).filter((s) => s.startsWith(`${c} `));
    leaves.push(...(sub.length ? sub : [c]));
  }
  return leaves;
}

test('every command has --help with defaults and an example, and the README lists exactly these commands', async () => {
  const leaves = await leafCommands();
  for (const must of ['info', 'forward', 'generate', 'convert-llama2c', 'similarity', 'compress', 'eval mmlu', 'export tfjs', 'export hf', 'sweep', 'demo']) {
    assert.ok(leaves.includes(must), `command ${must} missing from --help (have ${leaves.join(', ')})`);
  }
  for (const c of leaves) {
    const r = await help(...c.split(' '));
    assert.equal(r.status, 0, `${c} --help exited ${r.status}: ${r.stderr}`);
    assert.match(r.stdout, /Examples:/, `${c} --help shows no example`);
    assert.match(r.stdout, /--quiet/, `${c} --help lacks the global options`);
    // only the commands that run a model take the compute options
    const computes = !/^(info|convert-llama2c|export .*|serve|queue .*)$/.test(c);
    assert.equal(/--backend/.test(r.stdout) && /--threads/.test(r.stdout), computes, `${c} --help ${computes ? 'lacks' : 'shows'} --backend/--threads`);
    assert.match(r.stdout, /\[default:/, `${c} --help shows no defaults`);
    // --revision belongs to the commands whose --model may be a hub id, and --model says it may be one
    const hubModel = /^(info|forward|generate|similarity|compress|eval .*|export .*|sweep)$/.test(c);
    assert.equal(/--revision/.test(r.stdout), hubModel, `${c} --help ${hubModel ? 'lacks' : 'shows'} --revision`);
    if (hubModel) assert.match(r.stdout, /--model .*hub id/, `${c} --help: --model does not say it takes a hub id`);
  }
  const readme = readFileSync('README.md', 'utf8');
  // `mka eval TASK` stands for one subcommand per task of the registry
  const table = [...readme.matchAll(/^\| `mka ([a-z0-9-]+(?: [a-zA-Z][a-zA-Z0-9_-]*)?)[^`]*` \|/gm)].map((m) => m[1])
    .flatMap((c) => (c === 'eval TASK' ? LM_EVAL_TASKS.map((t) => `eval ${t.name}`) : [c]));
  assert.deepEqual([...table].sort(), [...leaves].sort(), 'README command table and the CLI disagree');
});

test('user errors exit 1 with one line; unknown commands are refused', () => {
  const r = run('info', '--model', '/nonexistent/model');
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /nonexistent/);
  const u = run('frobnicate');
  assert.equal(u.status, 1);
  const bad = run('compress', '--model', 'x', '--remove', '1', '--out', 'y', '--method', 'nope');
  assert.equal(bad.status, 1);
});
