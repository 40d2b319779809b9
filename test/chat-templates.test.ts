/**
 * tokenizer_config.json's chat_template as a list of {name, template}, against transformers 4.57.6 and
 * llama.cpp's gguf-py (test/goldens/gguf/chat-templates.json, from chat-templates.py beside it): the
 * templates by name as transformers keeps them (a later entry replaces an earlier one of its name, the
 * one named "default" used when none is asked for), the GGUF keys gguf-py's add_chat_template writes for
 * them, malformed entries refused in one line naming the file and the entry, and a model's templates
 * carried into GGUF and back into tokenizer_config.json; chat_template.jinja and
 * additional_chat_templates/NAME.jinja read in place of tokenizer_config.json's, as transformers loads
 * them, and copied with the tokenizer files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chatTemplates, checkTokenizerConfig, modelChatTemplates } from '../src/tokenizer/config.ts';
import { chatTemplateMetadata } from '../src/gguf/vocab.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { exportGguf } from '../src/export/gguf.ts';
import { exportHf } from '../src/export/hf.ts';
import { UserError } from '../src/runtime/errors.ts';
import { writeLlama3Tiny } from './llama3-tiny.ts';
import { scratchDir } from './scratch.ts';

const G = JSON.parse(readFileSync(join(process.cwd(), 'test', 'goldens', 'gguf', 'chat-templates.json'), 'utf8')) as {
  list: { name: string; template: string }[]; get_chat_template: Record<string, string>; gguf_keys: Record<string, string | string[]>;
  files: Record<'jinja' | 'jinja+additional' | 'additional', string | Record<string, string>>;
};
const FILE = '/m/tokenizer_config.json';

/** The metadata as the golden records it: each key's text, an array's items sorted (gguf-py writes them from a set). */
function keysOf(entries: ReturnType<typeof chatTemplateMetadata>): [string, string | string[]][] {
  return entries.map(([k, v]) => [k, 'array' in v ? [...(v.array.values as string[])].sort() : v.value as string]);
}

test('the list form reads as transformers reads it, and becomes the GGUF keys llama.cpp\'s gguf-py writes', () => {
  const config = { chat_template: G.list };
  checkTokenizerConfig(config, FILE);
  const chat = chatTemplates(config) as Map<string, string>;
  assert.ok(chat instanceof Map);
  // transformers' get_chat_template(): the default with no name, else the named one
  assert.equal(chat.get('default'), G.get_chat_template['']);
  for (const [name, template] of Object.entries(G.get_chat_template)) if (name) assert.equal(chat.get(name), template, name);
  // gguf-py: named templates (letters, digits and _ in their keys), their names, then the default; in that order
  assert.deepEqual(keysOf(chatTemplateMetadata(chatTemplates(config), FILE)), Object.entries(G.gguf_keys).map(([k, v]) => [k, Array.isArray(v) ? [...v].sort() : v]));
  // one template as text, and none
  assert.deepEqual(keysOf(chatTemplateMetadata('T', FILE)), [['tokenizer.chat_template', 'T']]);
  assert.deepEqual(chatTemplateMetadata(chatTemplates({ chat_template: null }), FILE), []);
  // no "default": named templates only (transformers then wants a name; llama.cpp has no default template)
  assert.deepEqual(keysOf(chatTemplateMetadata(new Map([['rag', 'R']]), FILE)), [['tokenizer.chat_template.rag', 'R'], ['tokenizer.chat_templates', ['rag']]]);
});

test('a malformed entry, a name GGUF cannot carry, or two names GGUF writes alike: one line naming the file and the entry', () => {
  const refused = (chat: unknown, needle: string) => {
    assert.throws(() => {
      const config = { chat_template: chat };
      checkTokenizerConfig(config, FILE);
      chatTemplateMetadata(chatTemplates(config), FILE);
    }, (e: Error) => e instanceof UserError && e.message.startsWith(`${FILE}: "chat_template" `) && e.message.includes(needle) && !/\n/.test(e.message), `${JSON.stringify(chat)}: ${needle}`);
  };
  refused(['x'], 'is a list whose entry 0 is "x", but must be a Jinja template as text, or a list of {"name": text, "template": text}');
  refused([{ name: 'default', template: 'D' }, { template: 'T' }], 'entry 1 has no "name"');
  refused([{ name: 3, template: 'T' }], 'entry 0 has "name" 3');
  refused([{ name: 'a' }], 'entry 0 has no "template"');
  refused([{ name: 'a', template: ['x'] }], 'entry 0 has "template" an array');
  refused([{ name: 'a', template: 'T' }, null], 'entry 1 is null');
  refused({ name: 'a', template: 'T' }, 'is an object, but must be');
  refused([{ name: 'a-b', template: 'A' }, { name: 'a_b', template: 'B' }], 'names "a-b" and "a_b" are both a_b in GGUF');
  refused([{ name: '', template: 'A' }], 'a template named "", which GGUF cannot carry');
});

test('export gguf carries the templates, and the GGUF back to Hugging Face files gives them as the list form', async () => {
  const TMP = scratchDir('chat-templates');
  const model = join(TMP, 'tiny');
  await writeLlama3Tiny(model);
  const cfgFile = join(model, 'tokenizer_config.json');
  writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), chat_template: G.list }));
  const file = join(TMP, 'tiny.gguf');
  await exportGguf({ model, out: file, type: 'f32', quiet: true });
  const g = new GgufFile(file);
  try {
    for (const [k, v] of Object.entries(G.gguf_keys)) {
      if (Array.isArray(v)) assert.deepEqual([...(g.array(k)!.values as string[])].sort(), v, k);
      else assert.equal(g.string(k), v, k);
    }
  } finally {
    g.close();
  }
  const back = join(TMP, 'back');
  await exportHf({ model: file, out: back });
  assert.deepEqual(JSON.parse(readFileSync(join(back, 'tokenizer_config.json'), 'utf8')).chat_template, [
    { name: 'default', template: 'D' }, { name: 'tool_use', template: 'T2' }, { name: 'rag_v2', template: 'R' }, { name: '_a', template: 'E' },
  ]);
  // and that list is one transformers and the GGUF export take again
  const cfg = JSON.parse(readFileSync(join(back, 'tokenizer_config.json'), 'utf8'));
  checkTokenizerConfig(cfg, join(back, 'tokenizer_config.json'));
  assert.deepEqual(keysOf(chatTemplateMetadata(chatTemplates(cfg))).sort(), Object.entries(G.gguf_keys).map(([k, v]) => [k, Array.isArray(v) ? [...v].sort() : v]).sort());
});

test('chat_template.jinja and additional_chat_templates/NAME.jinja take the place of tokenizer_config.json\'s template, as transformers loads them; GGUF and HF exports carry them', async () => {
  const TMP = scratchDir('chat-template-files');
  const dir = join(TMP, 'layouts');
  mkdirSync(join(dir, 'additional_chat_templates'), { recursive: true });
  const config = { chat_template: 'FROM CONFIG' };
  const asTransformers = (t: string | Map<string, string> | null) => (t instanceof Map ? Object.fromEntries(t) : t);
  assert.deepEqual(modelChatTemplates(dir, config), { templates: 'FROM CONFIG', files: [] });
  writeFileSync(join(dir, 'chat_template.jinja'), 'J {{ messages }}\n');
  assert.deepEqual(asTransformers(modelChatTemplates(dir, config).templates), G.files.jinja);
  writeFileSync(join(dir, 'additional_chat_templates', 'tool_use.jinja'), 'TU');
  writeFileSync(join(dir, 'additional_chat_templates', 'notes.txt'), 'not a template');
  assert.deepEqual(asTransformers(modelChatTemplates(dir, config).templates), G.files['jinja+additional']);
  rmSync(join(dir, 'chat_template.jinja'));
  assert.deepEqual(asTransformers(modelChatTemplates(dir, config).templates), G.files.additional);

  const model = join(TMP, 'tiny');
  await writeLlama3Tiny(model);
  const cfgFile = join(model, 'tokenizer_config.json');
  writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), chat_template: 'FROM CONFIG' }));
  writeFileSync(join(model, 'chat_template.jinja'), 'J {{ messages }}\n');
  mkdirSync(join(model, 'additional_chat_templates'));
  writeFileSync(join(model, 'additional_chat_templates', 'tool_use.jinja'), 'TU');
  writeFileSync(join(model, 'additional_chat_templates', 'notes.txt'), 'not a template');
  const file = join(TMP, 'tiny.gguf');
  const logs: string[] = [];
  await exportGguf({ model, out: file, type: 'f32', quiet: true, log: (m) => logs.push(m) });
  assert.deepEqual(logs.filter((l) => l.includes('chat_template')), ["tokenizer: chat_template.jinja, additional_chat_templates/tool_use.jinja take the place of tokenizer_config.json's chat_template, as transformers loads them"]);
  const g = new GgufFile(file);
  try {
    assert.equal(g.string('tokenizer.chat_template'), 'J {{ messages }}\n');
    assert.equal(g.string('tokenizer.chat_template.tool_use'), 'TU');
    assert.deepEqual([...(g.array('tokenizer.chat_templates')!.values as string[])], ['tool_use']);
  } finally {
    g.close();
  }
  // a Hugging Face copy of the model keeps the files
  const hf = join(TMP, 'hf');
  await exportHf({ model, out: hf });
  assert.equal(readFileSync(join(hf, 'chat_template.jinja'), 'utf8'), 'J {{ messages }}\n');
  assert.equal(readFileSync(join(hf, 'additional_chat_templates', 'tool_use.jinja'), 'utf8'), 'TU');
  assert.ok(!existsSync(join(hf, 'additional_chat_templates', 'notes.txt')));
});
