/**
 * `--model org/name` from a hub look-alike on loopback (test/hub-server.ts): the cache layout Python's
 * huggingface_hub uses (refs/, blobs/<etag>, relative snapshot symlinks), only the files mka needs, a
 * connection dropped mid-file resumed with a Range request, a wrong checksum refused, gated models
 * with HF_TOKEN, HF_HUB_OFFLINE, --revision, and pickle-only repositories refused.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveModelDir } from '../src/hub/model.ts';
import { runCliInProcess } from './cli-run.ts';
import { startFakeHub, gitSha1, sha256, type FakeHub } from './hub-server.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('hub');
const SHA = 'a'.repeat(39) + '1';
const demo = (f: string) => readFileSync(join('models/demo', f));
const DEMO_FILES = {
  'config.json': demo('config.json'), 'tokenizer.json': demo('tokenizer.json'), 'tokenizer_config.json': demo('tokenizer_config.json'),
  'model.safetensors': demo('model.safetensors'), 'README.md': Buffer.from('# demo\n'), 'pytorch_model.bin': Buffer.from('pickle'),
  'original/consolidated.pth': Buffer.from('pickle'),
};
const isLfs = (p: string) => /\.(safetensors|bin|pth)$/.test(p);
let hub: FakeHub;
before(async () => {
  hub = await startFakeHub([
    { type: 'model', name: 'acme/demo', sha: SHA, tags: ['v1'], files: DEMO_FILES, lfs: isLfs, dropOnce: new Set(['model.safetensors']) },
    { type: 'model', name: 'acme/gated', sha: SHA, files: DEMO_FILES, lfs: isLfs, token: 'hf_testtoken' },
    { type: 'model', name: 'acme/corrupt', sha: SHA, files: DEMO_FILES, lfs: isLfs, corrupt: new Set(['model.safetensors']) },
    { type: 'model', name: 'acme/pickled', sha: SHA, files: { 'config.json': demo('config.json'), 'pytorch_model.bin': Buffer.from('pickle') }, lfs: isLfs },
    { type: 'model', name: 'acme/templated', sha: SHA, lfs: isLfs, files: {
      ...DEMO_FILES, 'chat_template.jinja': Buffer.from('J'), 'additional_chat_templates/tool_use.jinja': Buffer.from('TU'),
      'additional_chat_templates/notes.md': Buffer.from('#'), 'additional_chat_templates/old/x.jinja': Buffer.from('X'),
    } },
    { type: 'model', name: 'acme/bad-index', sha: SHA, files: { 'config.json': demo('config.json'), 'model.safetensors.index.json': Buffer.from('{"weight_map": {"lm_head.weight": 5}}') }, lfs: isLfs },
  ]);
});
after(async () => {
  await hub.close();
  rmSync(TMP, { recursive: true, force: true });
});

const envFor = (cache: string, extra: Record<string, string> = {}) => ({ ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, HF_TOKEN: '', HF_HOME: join(TMP, 'home'), ...extra });
const quiet = { quiet: true };

const run = (args: string[], env: NodeJS.ProcessEnv) => runCliInProcess(args, { env }); // in this process: the fake hub answers on its loop

test('mka info --model org/name downloads into the huggingface_hub cache layout, resuming a dropped connection', async () => {
  const cache = join(TMP, 'cache-a');
  const r = await run(['info', '--model', 'acme/demo', '--json'], envFor(cache));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).layers, 8);
  assert.match(r.stderr, /download model\.safetensors/, 'a progress line per file');
  const repo = join(cache, 'models--acme--demo');
  assert.equal(readFileSync(join(repo, 'refs', 'main'), 'utf8'), SHA);
  const snap = join(repo, 'snapshots', SHA);
  assert.deepEqual(readdirSync(snap).sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'], 'only the files mka needs');
  // huggingface_hub's layout: relative links to ../../blobs/<etag>, etag = git sha1 (plain files) or sha256 (LFS)
  assert.ok(lstatSync(join(snap, 'config.json')).isSymbolicLink());
  assert.equal(readlinkSync(join(snap, 'config.json')), `../../blobs/${gitSha1(DEMO_FILES['config.json'])}`);
  assert.equal(readlinkSync(join(snap, 'model.safetensors')), `../../blobs/${sha256(DEMO_FILES['model.safetensors'])}`);
  assert.deepEqual(readFileSync(join(snap, 'model.safetensors')), DEMO_FILES['model.safetensors']);
  const gets = hub.requests.filter((q) => q.path === `/acme/demo/resolve/${SHA}/model.safetensors`);
  assert.equal(gets.length, 2, 'the dropped download was retried once');
  assert.equal(gets[1].range, `bytes=${Math.floor(DEMO_FILES['model.safetensors'].length / 2)}-`, 'and resumed where it stopped');
  assert.ok(!hub.requests.some((q) => /pytorch_model|README|original/.test(q.path) && q.path.includes('/resolve/')), 'unneeded files not downloaded');

  // again: nothing downloaded; offline: from refs/main without the network
  const before = hub.requests.length;
  assert.equal(await resolveModelDir('acme/demo', { env: envFor(cache), ...quiet }), snap);
  assert.ok(!hub.requests.slice(before).some((q) => q.path.includes('/resolve/')), 'cached files are not fetched again');
  const n = hub.requests.length;
  assert.equal(await resolveModelDir('acme/demo', { env: envFor(cache, { HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' }), ...quiet }), snap);
  assert.equal(hub.requests.length, n, 'HF_HUB_OFFLINE=1 makes no request');
  await assert.rejects(resolveModelDir('acme/other', { env: envFor(cache, { HF_HUB_OFFLINE: '1' }), ...quiet }), /not in the hub cache .* HF_HUB_OFFLINE/);

  // --revision: a tag resolves to its commit and is recorded in refs/
  assert.equal(await resolveModelDir('acme/demo', { revision: 'v1', env: envFor(cache), ...quiet }), snap);
  assert.equal(readFileSync(join(repo, 'refs', 'v1'), 'utf8'), SHA);
  await assert.rejects(resolveModelDir('acme/demo', { revision: 'nope', env: envFor(cache), ...quiet }), /acme\/demo@nope: .*no such model or revision/);
});

test('a snapshot already in the cache as Python left it is used without downloading', async () => {
  const cache = join(TMP, 'cache-python');
  const repo = join(cache, 'models--acme--demo');
  const snap = join(repo, 'snapshots', SHA);
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(join(repo, 'refs'), { recursive: true });
  mkdirSync(snap, { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), SHA);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'] as const) {
    const etag = isLfs(f) ? sha256(DEMO_FILES[f]) : gitSha1(DEMO_FILES[f]);
    writeFileSync(join(repo, 'blobs', etag), DEMO_FILES[f]);
    (await import('node:fs')).symlinkSync(`../../blobs/${etag}`, join(snap, f));
  }
  const before = hub.requests.length;
  assert.equal(await resolveModelDir('acme/demo', { env: envFor(cache), ...quiet }), snap);
  assert.ok(!hub.requests.slice(before).some((q) => q.path.includes('/resolve/')));
});

test('a partial download left by an earlier run is resumed; a wrong checksum is refused and leaves nothing', async () => {
  const cache = join(TMP, 'cache-b');
  const blobs = join(cache, 'models--acme--corrupt', 'blobs');
  await assert.rejects(resolveModelDir('acme/corrupt', { env: envFor(cache), ...quiet }), /model\.safetensors: checksum mismatch \(sha256 [0-9a-f]+, the hub says [0-9a-f]+\)/);
  assert.ok(!readdirSync(blobs).some((f) => f.startsWith(sha256(DEMO_FILES['model.safetensors']))), 'neither the blob nor its partial file remains');

  const cache2 = join(TMP, 'cache-c');
  const blob = join(cache2, 'models--acme--gated', 'blobs', sha256(DEMO_FILES['model.safetensors']));
  mkdirSync(join(blob, '..'), { recursive: true });
  writeFileSync(`${blob}.incomplete`, DEMO_FILES['model.safetensors'].subarray(0, 1000));
  const before = hub.requests.length;
  await assert.rejects(resolveModelDir('acme/gated', { env: envFor(cache2), ...quiet }), /refused access \(HTTP 401\).*HF_TOKEN/);
  const dir = await resolveModelDir('acme/gated', { env: envFor(cache2, { HF_TOKEN: 'hf_testtoken' }), ...quiet });
  assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), DEMO_FILES['model.safetensors']);
  const get = hub.requests.slice(before).find((q) => q.path.endsWith('/model.safetensors'));
  assert.equal(get?.range, 'bytes=1000-');
  assert.ok(!existsSync(`${blob}.incomplete`));
});

test('a repository whose safetensors index does not fit its schema is refused naming the file and the fix', async () => {
  await assert.rejects(resolveModelDir('acme/bad-index', { env: envFor(join(TMP, 'cache-i')), ...quiet }),
    /model\.safetensors\.index\.json: not a valid safetensors index \(weight_map\.lm_head\.weight must be a string, not 5\); it is acme\/bad-index's own file: choose another revision of it \(--revision\)$/);
});

test('pickle-only repositories are refused with a clear message; local paths are left alone', async () => {
  const r = await run(['info', '--model', 'acme/pickled'], envFor(join(TMP, 'cache-d')));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^mka: acme\/pickled: has only pickle weights \(pytorch_model\.bin\).*safetensors/);
  assert.equal(await resolveModelDir('models/demo', { env: envFor(join(TMP, 'cache-d')) }), 'models/demo');
});

test('a --revision, a hub file name or a checksum that would leave the cache is refused, online and offline', async () => {
  const cache = join(TMP, 'cache-hostile');
  const outside = join(TMP, 'outside');
  const hostile = await startFakeHub([
    { type: 'model', name: 'evil/oid', sha: SHA, files: DEMO_FILES, lfs: isLfs, tree: (es) => es.map((e) => (e.path === 'config.json' ? { ...e, oid: '../../../../outside/x' } : e)) },
    { type: 'model', name: 'evil/lfs', sha: SHA, files: DEMO_FILES, lfs: isLfs, tree: (es) => es.map((e) => (e.lfs ? { ...e, lfs: { ...e.lfs, oid: `../${'a'.repeat(61)}` } } : e)) },
    { type: 'model', name: 'evil/path', sha: SHA, files: DEMO_FILES, lfs: isLfs, tree: (es) => [...es, { ...es[0], path: '../../../outside/config.json' }] },
  ]);
  try {
    const env = { ...envFor(cache), HF_ENDPOINT: hostile.url };
    for (const name of ['evil/oid', 'evil/lfs', 'evil/path']) {
      await assert.rejects(resolveModelDir(name, { env, ...quiet }), /not a sha1 or sha256|not a plain relative path/, name);
    }
    for (const revision of ['../../outside', '..', '/etc', 'a/../../b', '']) {
      await assert.rejects(resolveModelDir('acme/demo', { revision, env: envFor(cache), ...quiet }), /--revision .*not a plain relative path/, JSON.stringify(revision));
      await assert.rejects(resolveModelDir('acme/demo', { revision, env: envFor(cache, { HF_HUB_OFFLINE: '1' }), ...quiet }), /--revision .*not a plain relative path/, JSON.stringify(revision));
    }
    // names the hub does not allow are local paths, never hub ids (no request, no cache directory)
    for (const name of ['acme/..', 'acme/.', 'acme/a..b', 'ac--me/demo', 'acme/demo.', '-acme/demo', `acme/${'a'.repeat(100)}`]) {
      assert.equal(await resolveModelDir(name, { env: { ...env, HF_HUB_OFFLINE: '1' }, ...quiet }), name, name);
    }
    assert.ok(!existsSync(cache) || readdirSync(cache).every((d) => !d.includes('..')), 'no cache directory for them');
    // a refs/ file pointing out of snapshots/ is not followed
    mkdirSync(join(cache, 'models--acme--demo', 'refs'), { recursive: true });
    writeFileSync(join(cache, 'models--acme--demo', 'refs', 'main'), '../../../outside');
    await assert.rejects(resolveModelDir('acme/demo', { env: envFor(cache, { HF_HUB_OFFLINE: '1' }), ...quiet }), /not in the hub cache/);
    assert.ok(!existsSync(outside), 'nothing written outside the cache');
    const r = await run(['info', '--model', 'acme/demo', '--revision', ''], envFor(cache));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /^mka: --revision is empty; give it a value or leave it out\n$/);
  } finally {
    await hostile.close();
  }
});

test('a model\'s chat template files (chat_template.jinja, additional_chat_templates/NAME.jinja) are downloaded with its tokenizer files', async () => {
  const snap = await resolveModelDir('acme/templated', { env: envFor(join(TMP, 'cache-templated')), ...quiet });
  assert.deepEqual(readdirSync(snap).sort(), ['additional_chat_templates', 'chat_template.jinja', 'config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  assert.deepEqual(readdirSync(join(snap, 'additional_chat_templates')), ['tool_use.jinja']);
  assert.equal(readFileSync(join(snap, 'additional_chat_templates', 'tool_use.jinja'), 'utf8'), 'TU');
});
