/** Every compression method by name: MKA and the pruning baselines the paper compares with. */
import { UserError } from '../../runtime/errors.ts';
import type { CompressionMethod } from './method.ts';
import { mka } from './mka.ts';
import { reverse } from './reverse.ts';
import { shortgpt } from './shortgpt.ts';
import { angular } from './angular.ts';

export const METHODS: readonly CompressionMethod[] = [mka, reverse, shortgpt, angular];

/** The method called `name`, or a UserError listing the known ones. */
export function getMethod(name: string): CompressionMethod {
  const m = METHODS.find((x) => x.name === name);
  if (!m) throw new UserError(`--method ${name} is not known; methods: ${METHODS.map((x) => x.name).join(', ')}`);
  return m;
}
