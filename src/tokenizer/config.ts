/**
 * The fields of a tokenizer_config.json that mka, @huggingface/tokenizers or a GGUF export reads, checked in
 * one place: each must be of the type transformers takes, or the file is refused with a one-line error
 * naming it and the field. A wrong type is never read as absent, and never by JavaScript's truthiness
 * where transformers' would differ ("false" is true to Python), since either would change the tokens.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { isPlainObject, isTokenId, readTextFile, showJson } from '../io/read.ts';

type Json = Record<string, unknown>;

/** Special tokens: text, {"content": text, ...} (an AddedToken) or null, as transformers accepts them. */
const SPECIAL_TOKENS = ['bos_token', 'eos_token', 'unk_token', 'pad_token'] as const;
/** Flags that are true, false or null (null: transformers' None, read as false). */
const FLAGS = ['add_bos_token', 'add_eos_token', 'clean_up_tokenization_spaces', 'remove_space', 'do_lowercase_and_remove_accent'] as const;

function isSpecialToken(v: unknown): boolean {
  return typeof v === 'string' || (isPlainObject(v) && typeof v.content === 'string');
}

/** Refuses `config` (tokenizer_config.json at `file`) when a field it holds is of a type transformers would not take. */
export function checkTokenizerConfig(config: Json, file: string): void {
  const refuse = (field: string, must: string): never => {
    throw new UserError(`${file}: "${field}" is ${showJson(config[field])}, but must be ${must}; fix the field (or remove it for the default)`);
  };
  for (const f of SPECIAL_TOKENS) {
    if (f in config && config[f] !== null && !isSpecialToken(config[f])) refuse(f, 'a token as text (e.g. "<s>"), {"content": text} or null');
  }
  const extra = config.additional_special_tokens;
  if (extra !== undefined && extra !== null && !(Array.isArray(extra) && extra.every(isSpecialToken))) {
    refuse('additional_special_tokens', 'a list of tokens as text or {"content": text}');
  }
  for (const f of FLAGS) {
    if (f in config && config[f] !== null && typeof config[f] !== 'boolean') refuse(f, 'true or false (JSON, unquoted: transformers would read "false" as true)');
  }
  if (config.tokenizer_class !== undefined && config.tokenizer_class !== null && typeof config.tokenizer_class !== 'string') {
    refuse('tokenizer_class', 'the name of a transformers tokenizer class, e.g. "LlamaTokenizerFast"');
  }
  const max = config.model_max_length;
  if (max !== undefined && max !== null && typeof max !== 'number') refuse('model_max_length', 'a number of tokens');
  const chat = config.chat_template;
  const chatMust = 'a Jinja template as text, or a list of {"name": text, "template": text} (the one named "default" used when none is asked for)';
  if (chat !== undefined && chat !== null && typeof chat !== 'string' && !Array.isArray(chat)) refuse('chat_template', chatMust);
  if (Array.isArray(chat)) {
    chat.forEach((t, i) => {
      if (isPlainObject(t) && typeof t.name === 'string' && typeof t.template === 'string') return;
      const bad = (k: 'name' | 'template') => ((t as Json)[k] === undefined ? `has no "${k}"` : `has "${k}" ${showJson((t as Json)[k])}`);
      const what = !isPlainObject(t) ? `is ${showJson(t)}` : typeof t.name !== 'string' ? bad('name') : bad('template');
      throw new UserError(`${file}: "chat_template" is a list whose entry ${i} ${what}, but must be ${chatMust}; fix the field's entry ${i} (or remove the entry)`);
    });
  }
}

/**
 * The chat templates of a checked tokenizer_config.json as transformers keeps them: one template (text),
 * or templates by name from the list form, a later entry replacing an earlier one of its name (the one
 * named "default" is used when none is asked for); null when there is none.
 */
export function chatTemplates(config: Json): string | Map<string, string> | null {
  const chat = config.chat_template;
  if (typeof chat === 'string') return chat;
  if (!Array.isArray(chat)) return null;
  return new Map((chat as { name: string; template: string }[]).map((t) => [t.name, t.template]));
}

/** transformers' file of the default chat template beside tokenizer_config.json, and its folder of named ones (NAME.jinja). */
export const CHAT_TEMPLATE_FILE = 'chat_template.jinja';
export const CHAT_TEMPLATE_DIR = 'additional_chat_templates';

/** The chat template files of a model directory (paths relative to it): chat_template.jinja, then additional_chat_templates/NAME.jinja by name. */
export function chatTemplateFiles(dir: string): string[] {
  const named = join(dir, CHAT_TEMPLATE_DIR);
  const extra = existsSync(named) && statSync(named).isDirectory()
    ? readdirSync(named).filter((f) => f.endsWith('.jinja')).sort().map((f) => `${CHAT_TEMPLATE_DIR}/${f}`) : [];
  return [...(existsSync(join(dir, CHAT_TEMPLATE_FILE)) ? [CHAT_TEMPLATE_FILE] : []), ...extra];
}

/**
 * The chat templates of model directory `dir` as transformers loads them: its template files
 * (chatTemplateFiles: the default, and others by their file's name), when there are any, in place of
 * tokenizer_config.json's chat_template (`config`, checked); else that one. `files` are the files read.
 */
export function modelChatTemplates(dir: string, config: Json): { templates: string | Map<string, string> | null; files: string[] } {
  const files = chatTemplateFiles(dir);
  if (!files.length) return { templates: chatTemplates(config), files };
  const byName = new Map(files.map((f) => [f === CHAT_TEMPLATE_FILE ? 'default' : f.slice(CHAT_TEMPLATE_DIR.length + 1, -'.jinja'.length), readTextFile(join(dir, f), 'chat template')]));
  return { templates: byName.size === 1 && byName.has('default') ? byName.get('default')! : byName, files };
}

/** Refuses generation_config.json's eos_token_id (at `file`) unless it is null, a token id or a list of them: another value would be dropped, and generation would not stop there. */
export function checkGenerationConfig(config: Json, file: string): void {
  const eos = config.eos_token_id;
  if (eos !== undefined && eos !== null && !isTokenId(eos) && !(Array.isArray(eos) && eos.every(isTokenId))) {
    throw new UserError(`${file}: "eos_token_id" is ${Array.isArray(eos) ? 'a list holding something else' : showJson(eos)}, but must be a token id (an integer >= 0), a list of them or null; fix the field`);
  }
}
