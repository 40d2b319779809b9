/**
 * config.json's quantization_config against the packed tensors it describes (src/model/open.ts): bits,
 * group_size and sym of the decoder's linears, and of the embedding and lm_head in `tables`. A config
 * that contradicts the tensors' shapes and dtypes is refused in one line naming config.json and the
 * tensor, by every command (info included), with no output written; spellings of the same grid (a
 * group as wide as the rows, -1) and a config without tables (an older version's) load.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertUserError, runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('packed-config');
after(() => rmSync(TMP, { recursive: true, force: true }));
const DEMO = join(process.cwd(), 'models', 'demo');

async function quantize(out: string, ...args: string[]): Promise<Record<string, any>> {
  const r = await runCliInProcess(['quantize', '--model', DEMO, '--method', 'rtn', ...args, '--out', out, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
}

test('a quantization_config whose bits, group_size or sym the packed tensors contradict is refused naming config.json and the tensor', async () => {
  const Q = join(TMP, 'w4g32');
  const cfg = await quantize(Q, '--group-size', '32');
  const cfgFile = join(Q, 'config.json'), weights = join(Q, 'model.safetensors');
  const q = cfg.quantization_config;
  const cases: [string, Record<string, unknown>, string][] = [
    ['bits 8', { ...q, bits: 8 }, 'model.layers.0.self_attn.q_proj.qweight'],
    ['group_size 64', { ...q, group_size: 64 }, 'model.layers.0.self_attn.q_proj.qweight'],
    ['group_size -1', { ...q, group_size: -1 }, 'model.layers.0.self_attn.q_proj.qweight'],
    ['sym false', { ...q, sym: false }, 'model.layers.0.self_attn.q_proj.qweight'],
    ['lm_head 4-bit', { ...q, tables: { ...q.tables, 'lm_head.weight': { bits: 4, group_size: 32, sym: true } } }, 'lm_head.qweight'],
    ['embedding per row', { ...q, tables: { ...q.tables, 'model.embed_tokens.weight': { bits: 8, group_size: -1, sym: true } } }, 'model.embed_tokens.qweight'],
  ];
  const out = join(TMP, 'out.gguf');
  for (const [label, qc, tensor] of cases) {
    writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: qc }));
    for (const args of [['info', '--model', Q], ['forward', '--model', Q, '--text', 'Hello'], ['export', 'gguf', '--model', Q, '--out', out]]) {
      const r = await runCliInProcess([...args, '--quiet']);
      assertUserError(r, `${cfgFile}: quantization_config`, `tensor "${tensor}" in ${weights}`, 'restore the config.json');
      assert.equal(existsSync(out), false, `${label}: ${args[0]} left its output`);
    }
  }
  // a malformed table is refused by the config's own checks
  writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: { ...q, tables: { 'lm_head.weight': { bits: '8' } } } }));
  assertUserError(await runCliInProcess(['info', '--model', Q]), `${cfgFile}: quantization_config.tables["lm_head.weight"].bits must be 4 or 8`);
  // without tables (as an older version wrote it) the embedding and lm_head are not checked; the decoder is
  const { tables: _, ...untabled } = q;
  writeFileSync(cfgFile, JSON.stringify({ ...cfg, quantization_config: untabled }));
  const r = await runCliInProcess(['info', '--model', Q, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(JSON.parse(r.stdout).quantization, /^rtn 4-bit group 32 symmetric/);
});

test('a per-row quantization_config may say -1 or any group at least as wide as every row', async () => {
  const Q = join(TMP, 'w8-channel');
  const cfg = await quantize(Q, '--group-size', '0', '--bits', '8');
  assert.equal(cfg.quantization_config.group_size, -1);
  for (const group_size of [176, 4096]) {
    writeFileSync(join(Q, 'config.json'), JSON.stringify({ ...cfg, quantization_config: { ...cfg.quantization_config, group_size } }));
    const r = await runCliInProcess(['forward', '--model', Q, '--text', 'Hello', '--quiet']);
    assert.equal(r.status, 0, `group_size ${group_size}: ${r.stderr}`);
  }
  writeFileSync(join(Q, 'config.json'), JSON.stringify({ ...cfg, quantization_config: { ...cfg.quantization_config, group_size: 128 } }));
  assertUserError(await runCliInProcess(['forward', '--model', Q, '--text', 'Hello', '--quiet']), 'quantization_config says 8-bit symmetric, groups of 128 (bits 8, group_size 128, sym true)', 'is packed 8-bit symmetric, one group per row');
});
