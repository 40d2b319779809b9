/** MKA's own parameters as options (`compress`, `sweep`), declared once (contract 5); no tfjs here. */
import { option } from '../../runtime/options.ts';

export const MKA_STRATEGIES = ['last-pair', 'adjacent'] as const;

export const MKA_STRATEGY = option({
  name: 'strategy', option: 'strategy', type: 'choice', choices: MKA_STRATEGIES, group: 'MKA:',
  help: 'mka: merge the last two layers repeatedly (last-pair, the paper) or the most similar adjacent pair (default last-pair)',
});
export const BLEND_NORMS = option({ name: 'blendNorms', option: 'blend-norms', type: 'boolean', group: 'MKA:', help: 'mka: blend RMSNorm weights too (default: keep layer i\'s)' });
