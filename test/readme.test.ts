/**
 * The README's shell blocks run as written. Convention (README.md and any document this test lists):
 * every fenced ```sh block is offline and is run, in order, by this test, from a fresh copy of the
 * repository root (results and data written there, not in the checkout), each with `bash -e -o
 * pipefail`; a block that needs the network, a GPU or a big model is either a ```text block or is
 * preceded by the line `<!-- readme-test: skip, REASON -->` saying what it needs. A run block that
 * installs or downloads (npm ci/install, pip, curl, git clone, huggingface-cli, apt-get) fails here:
 * mark it instead. The blocks run as another user when the tests run as root, so the checkout is as
 * read-only as a root-owned global install; what the README says `npm start` prints and writes (the
 * summary table, the report files, the tfjs export, all under the working directory and nothing in the
 * package) is checked on its run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { UNPRIVILEGED } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const ROOT = process.cwd();
const SKIP = /^<!--\s*readme-test:\s*skip,\s*(.+?)\s*-->$/;
const NETWORK = /\b(npm (ci|i|install)\b|pip3? install|curl |wget |git clone|huggingface-cli|apt(-get)? install)/;

export interface ShellBlock {
  /** 1-based line of the opening fence. */
  line: number;
  text: string;
  /** Why it is not run, when marked. */
  skip: string | null;
}

/** The ```sh blocks of a markdown text, with their skip markers. */
export function shellBlocks(markdown: string): ShellBlock[] {
  const lines = markdown.split('\n');
  const blocks: ShellBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(`{3,})(.*)$/.exec(lines[i]);
    if (!fence) continue;
    let end = i + 1;
    while (end < lines.length && !lines[end].startsWith(fence[1])) end++;
    if (fence[2].trim() === 'sh') {
      let prev = i - 1;
      while (prev >= 0 && lines[prev].trim() === '') prev--;
      const marker = prev >= 0 ? SKIP.exec(lines[prev].trim()) : null;
      blocks.push({ line: i + 1, text: lines.slice(i + 1, end).join('\n'), skip: marker ? marker[1] : null });
    }
    i = end;
  }
  return blocks;
}

test('shellBlocks finds sh blocks and their skip markers, and nothing in other fences', () => {
  const md = ['# t', '<!-- readme-test: skip, needs a GPU -->', '```sh', 'a', '```', 'x', '```text', 'b', '```', '', '```sh', 'c', 'd', '```', '````md', '```sh', 'e', '```', '````'].join('\n');
  assert.deepEqual(shellBlocks(md), [{ line: 3, text: 'a', skip: 'needs a GPU' }, { line: 11, text: 'c\nd', skip: null }]);
});

test('every README sh block runs as written from a fresh checkout, offline', () => {
  const blocks = shellBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'));
  assert.ok(blocks.some((b) => !b.skip), 'the README has runnable blocks');
  for (const b of blocks.filter((x) => !x.skip)) {
    assert.doesNotMatch(b.text, NETWORK, `README.md:${b.line}: this block needs the network; mark it <!-- readme-test: skip, REASON --> or make it a text block`);
  }
  // a fresh checkout: the repository's files (outputs of earlier runs left out), the installed node_modules and builds
  // (run as another user when the tests run as root: the checkout is then as read-only as a root-owned global install)
  const work = scratchDir('readme');
  if ('uid' in UNPRIVILEGED) chownSync(work, UNPRIVILEGED.uid!, UNPRIVILEGED.gid!);
  const packageData = join(ROOT, 'data', 'demo-mmlu');
  const before = existsSync(packageData) ? statSync(packageData).mtimeMs : null;
  try {
    for (const e of readdirSync(ROOT)) {
      if (!['results', 'data', '.git'].includes(e)) symlinkSync(join(ROOT, e), join(work, e));
    }
    const env = { ...process.env, HOME: work, XDG_CACHE_HOME: join(work, '.cache'), HF_HUB_OFFLINE: '1', npm_config_update_notifier: 'false' };
    let demo: string | null = null;
    for (const b of blocks.filter((x) => !x.skip)) {
      const r = spawnSync('bash', ['-e', '-o', 'pipefail', '-c', b.text], { cwd: work, env, encoding: 'utf8', maxBuffer: 64 * 2 ** 20, ...UNPRIVILEGED });
      assert.equal(r.status, 0, `README.md:${b.line} failed (exit ${r.status}):\n${b.text}\n--- stderr:\n${r.stderr.slice(-3000)}`);
      if (/^npm start\b/m.test(b.text)) demo = r.stdout;
    }
    // what the README says `npm start` (mka demo) prints and writes: the summary table, the report files and a
    // tfjs export, under the working directory, nothing written into the package
    assert.ok(demo !== null, 'the README runs `npm start`');
    assert.ok(existsSync(join(work, 'data', 'demo-mmlu', 'test', 'demo_facts_test.csv')), 'the benchmark is generated under the working directory');
    assert.equal(existsSync(packageData) ? statSync(packageData).mtimeMs : null, before, 'nothing is written into the package');
    assert.match(demo, /\| original \| 0 \| 8 \|/);
    assert.match(demo, /\| mka \| 2 \| 6 \|/);
    assert.match(demo, /^\| method \| removed \| layers \| ratio \| MB \| size ratio \| MMLU \| macro \| other \| answer ppl \| agreement \|$/m, 'only the category the demo subjects fill');
    assert.match(demo, /^\*answer ppl\*: MMLU answer perplexity/m, 'the column is named for what it is');
    for (const f of ['results.csv', 'results.json', 'summary.md', 'accuracy.png', 'similarity.png', 'tfjs-mka-4/model.json']) {
      assert.ok(existsSync(join(work, 'results', 'demo', f)), `${f} missing`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
