/** Every command of the CLI, in the order `--help` lists them (the docs test checks this list). */
import type { CommandModule } from 'yargs';
import { infoCommand } from './info.ts';
import { forwardCommand } from './forward.ts';
import { generateCommand } from './generate.ts';

export const COMMANDS: CommandModule<any, any>[] = [infoCommand, forwardCommand, generateCommand];
