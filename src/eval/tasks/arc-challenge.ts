/** ARC-Challenge as lm-eval's `arc_challenge` task: arc_easy's prompt and metrics on the ARC-Challenge configuration. */
import { arcEasy } from './arc-easy.ts';
import type { TaskDefinition } from './task.ts';

export const arcChallenge: TaskDefinition = {
  ...arcEasy,
  name: 'arc_challenge',
  dataset: { ...arcEasy.dataset, name: 'ARC-Challenge' },
  config: { ...arcEasy.config, task: 'arc_challenge', dataset_name: 'ARC-Challenge' },
};
