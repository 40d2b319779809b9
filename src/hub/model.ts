/**
 * `--model org/name`: a hub model id resolved to a directory in the hub cache holding only what mka
 * reads (config, generation config, tokenizer files, safetensors weights and their index). A local
 * path that exists is used as it is. Repositories with only pickle weights are refused.
 */
import { existsSync } from 'node:fs';
import { readSafetensorsIndex } from '../io/checkpoint.ts';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { snapshot, type HubFile } from './snapshot.ts';
import { flag } from '../runtime/options.ts';
import { REVISION } from '../model/options.ts';

const SMALL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja'];
/** The folder of named chat templates (NAME.jinja) transformers reads beside tokenizer_config.json. */
const CHAT_TEMPLATES = 'additional_chat_templates/';
const INDEX = 'model.safetensors.index.json';
const PICKLE = /\.(bin|pt|pth|ckpt|pkl|pickle)$/;

/**
 * What is a hub id: "org/name" as the hub allows it (huggingface_hub's validate_repo_id): letters, digits,
 * '_', '-' and '.', each part beginning and ending with a letter, digit or '_', no '--' or '..', at most
 * 96 characters. Anything else (`org/..`) is a local path.
 */
export const HUB_ID = /^(?=.{3,96}$)(?!.*(?:--|\.\.))[A-Za-z0-9](?:[\w.-]*\w)?\/\w(?:[\w.-]*\w)?$/;

export interface ResolveOptions {
  revision?: string;
  quiet?: boolean;
  log?: (msg: string) => void;
  env?: NodeJS.ProcessEnv;
}

/** The files of a model revision mka needs; throws for pickle-only or weightless repositories. */
async function selectModelFiles(name: string, files: HubFile[], fetchFiles: (paths: string[]) => Promise<string>): Promise<string[]> {
  const top = new Set(files.filter((f) => !f.path.includes('/')).map((f) => f.path));
  if (!top.has('config.json')) throw new UserError(`${name}: has no config.json at the top level; mka loads transformers-format Llama/Mistral/Qwen2 models`);
  // with the chat templates transformers reads from files of their own (tokenizer/config.ts)
  const small = [...SMALL_FILES.filter((f) => top.has(f)), ...files.map((f) => f.path).filter((p) => p.startsWith(CHAT_TEMPLATES) && p.endsWith('.jinja') && p.split('/').length === 2).sort()];
  if (top.has(INDEX)) {
    const dir = await fetchFiles([INDEX]);
    const shards = [...new Set(Object.values(readSafetensorsIndex(join(dir, INDEX), `it is ${name}'s own file: choose another revision of it (${flag(REVISION)})`).weight_map))];
    const missing = shards.filter((s) => !top.has(s));
    if (missing.length) throw new UserError(`${name}/${INDEX}: names shards the repository does not have (${missing.join(', ')})`);
    return [...small, INDEX, ...shards.sort()];
  }
  if (top.has('model.safetensors')) return [...small, 'model.safetensors'];
  const pickles = [...top].filter((f) => PICKLE.test(f));
  if (pickles.length) {
    throw new UserError(`${name}: has only pickle weights (${pickles.slice(0, 3).join(', ')}${pickles.length > 3 ? ', ...' : ''}), which mka does not load because unpickling can run arbitrary code; use a revision with safetensors (the hub's "Convert to safetensors" pull requests: ${flag(REVISION)} refs/pr/N) or convert them yourself`);
  }
  throw new UserError(`${name}: has no model.safetensors or ${INDEX}; mka needs safetensors weights in transformers' layout`);
}

function checkCachedModel(dir: string): void {
  if (!existsSync(join(dir, 'config.json')) || !(existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, INDEX)))) {
    throw new UserError(`${dir}: the cached snapshot lacks config.json or the safetensors weights; download it again with network (unset HF_HUB_OFFLINE)`);
  }
}

/** A model directory for `--model`: the path itself when it exists, else the hub id's cached snapshot (downloaded if needed). */
export async function resolveModelDir(arg: string, opts: ResolveOptions = {}): Promise<string> {
  if (existsSync(arg) || !HUB_ID.test(arg)) return arg;
  const name = arg;
  return snapshot({
    repo: { type: 'model', name }, revision: opts.revision, env: opts.env, quiet: opts.quiet, log: opts.log,
    select: (files, fetchFiles) => selectModelFiles(name, files, fetchFiles), checkCached: checkCachedModel,
  });
}
