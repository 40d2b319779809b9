/** Every command of the CLI, in the order `--help` lists them (the docs test checks this list). */
import type { CommandModule } from 'yargs';
import { infoCommand } from './info.ts';
import { forwardCommand } from './forward.ts';
import { generateCommand } from './generate.ts';
import { convertCommand } from './convert.ts';
import { similarityCommand } from './similarity.ts';
import { compressCommand } from './compress.ts';
import { evalCommand } from './eval.ts';
import { exportCommand } from './export.ts';
import { sweepCommand } from './sweep.ts';
import { demoCommand } from './demo.ts';
import { workerCommand } from './worker.ts';
import { queueCommand } from './queue.ts';

export const COMMANDS: CommandModule<any, any>[] = [infoCommand, forwardCommand, generateCommand, convertCommand, similarityCommand, compressCommand, evalCommand, exportCommand, sweepCommand, workerCommand, queueCommand, demoCommand];
