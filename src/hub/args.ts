/**
 * The CLI's one hook for hub ids: yargs middleware that replaces `--model` and `--reference-model`
 * values naming a hub model (org/name, not a local path) by their cached snapshot directory, and an
 * MMLU `--data` hub dataset (cais/mmlu) by its converted directory, before any command opens them.
 */
import { resolveModelDir } from './model.ts';
import { resolveMmluData } from './mmlu.ts';

const HUB_OPTIONS = [['model', 'model', resolveModelDir], ['reference-model', 'referenceModel', resolveModelDir], ['data', 'data', resolveMmluData]] as const;

/** Resolves hub ids in the parsed arguments in place (with --revision, --quiet). */
export async function resolveHubArgs(argv: Record<string, unknown>): Promise<void> {
  for (const [option, camel, resolve] of HUB_OPTIONS) {
    const v = argv[option];
    if (typeof v !== 'string') continue;
    const dir = await resolve(v, {
      revision: typeof argv.revision === 'string' ? argv.revision : undefined, quiet: argv.quiet === true,
      log: (m) => { if (argv.quiet !== true) process.stderr.write(`${m}\n`); },
    });
    argv[option] = dir;
    argv[camel] = dir;
  }
}
