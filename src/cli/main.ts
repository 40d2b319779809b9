/**
 * The mka command line's process (bin/mka.mjs runs this file): runs src/cli/run.ts on the arguments and
 * exits with its code, 1 for errors the user can fix, said in one line, 2 for anything else.
 */
import { hideBin } from 'yargs/helpers';
import { reportError, runCli } from './run.ts';

// A closed pipe on stdout (`mka info | head -1`) ends the run quietly; on stderr there is no one left to tell.
process.stdout.on('error', (e: NodeJS.ErrnoException) => process.exit(e.code === 'EPIPE' ? 0 : reportError(e)));
process.stderr.on('error', () => process.exit(1));
process.on('unhandledRejection', (e) => process.exit(reportError(e)));
const code = await runCli(hideBin(process.argv));
if (code !== 0) process.exit(code);
