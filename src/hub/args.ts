/**
 * The CLI's one hook for hub ids: yargs middleware that replaces `--model` and `--reference-model`
 * values naming a hub model (org/name, not a local path) by their cached snapshot directory, before
 * any command opens them.
 */
import { resolveModelDir } from './model.ts';

const MODEL_OPTIONS = [['model', 'model'], ['reference-model', 'referenceModel']] as const;

/** Resolves hub ids in the parsed arguments in place (with --revision, --quiet). */
export async function resolveHubArgs(argv: Record<string, unknown>): Promise<void> {
  for (const [option, camel] of MODEL_OPTIONS) {
    const v = argv[option];
    if (typeof v !== 'string') continue;
    const dir = await resolveModelDir(v, {
      revision: typeof argv.revision === 'string' ? argv.revision : undefined, quiet: argv.quiet === true,
      log: (m) => { if (argv.quiet !== true) process.stderr.write(`${m}\n`); },
    });
    argv[option] = dir;
    argv[camel] = dir;
  }
}
