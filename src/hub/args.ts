/**
 * The CLI's one hook for hub ids: yargs middleware that replaces `--model` and `--reference-model`
 * values naming a hub model (org/name, not a local path) by their cached snapshot directory, and
 * `--data` naming a hub dataset by a local form: MMLU (cais/mmlu) as its converted directory, or for
 * `eval ppl` a text dataset (Salesforce/wikitext) as the corpus file given to `--text` (`eval TASK` and
 * `eval tasks` resolve their datasets themselves, dataset.ts). Runs before any command opens them.
 */
import { UserError } from '../runtime/errors.ts';
import { resolveModelDir } from './model.ts';
import { resolveMmluData } from './mmlu.ts';
import { resolveTextDataset } from './text.ts';
import { LM_EVAL_TASKS } from '../eval/tasks/registry.ts';

/** Resolves hub ids in the parsed arguments in place (with --revision, --quiet). */
export async function resolveHubArgs(argv: Record<string, unknown>): Promise<void> {
  const quiet = argv.quiet === true;
  const common = { quiet, log: (m: string) => { if (!quiet) process.stderr.write(`${m}\n`); } };
  const revision = typeof argv.revision === 'string' ? argv.revision : undefined;
  for (const [option, camel] of [['model', 'model'], ['reference-model', 'referenceModel']]) {
    if (typeof argv[option] !== 'string') continue;
    argv[option] = argv[camel] = await resolveModelDir(argv[option] as string, { ...common, revision });
  }
  if (typeof argv.data !== 'string') return;
  const [command, sub] = (argv._ as unknown[]).map(String);
  // eval TASK and eval tasks resolve each task's dataset themselves (src/hub/dataset.ts): its configuration and splits
  if (command === 'eval' && (sub === 'tasks' || LM_EVAL_TASKS.some((t) => t.name === sub))) return;
  if (`${command} ${sub}` === 'eval ppl') {
    if (typeof argv.text === 'string') throw new UserError('eval ppl: give --text FILE or --data DATASET, not both');
    argv.text = await resolveTextDataset(argv.data, { ...common, subset: argv.subset as string | undefined, split: argv.split as string | undefined });
    delete argv.data; // now given as --text; --data is a directory option for every other command
  } else {
    argv.data = await resolveMmluData(argv.data, common);
  }
}
