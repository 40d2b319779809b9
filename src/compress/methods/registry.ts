/** Every compression method by name: MKA and the pruning baselines the paper compares with. */
import { UserError } from '../../runtime/errors.ts';
import type { CompressionMethod, MethodContext } from './method.ts';
import type { CompressionPlan } from '../merge-plan.ts';
import { mka, type MkaParameters } from './mka.ts';
import { reverse } from './reverse.ts';
import { shortgpt } from './shortgpt.ts';
import { angular } from './angular.ts';

export const METHODS: readonly CompressionMethod[] = [mka, reverse, shortgpt, angular];

/** The parameters each method declares, by method name (a method without any has no entry). */
export interface MethodParameters {
  mka?: Partial<MkaParameters>;
}

/** The method called `name`, or a UserError listing the known ones. */
export function getMethod(name: string): CompressionMethod {
  const m = METHODS.find((x) => x.name === name);
  if (!m) throw new UserError(`method ${name} is not known; methods: ${METHODS.map((x) => x.name).join(', ')}`);
  return m;
}

/** A method's parameters: its defaults, overridden by those given for it in `params`. */
export function parametersOf(method: CompressionMethod, params: MethodParameters = {}): object {
  const given: Partial<Record<string, object>> = { ...params };
  return { ...method.defaults, ...given[method.name] };
}

/** The method's plan removing `remove` layers, with its own parameters taken from `params`. */
export function planWith(method: CompressionMethod, ctx: MethodContext, remove: number, params: MethodParameters = {}): Promise<CompressionPlan> {
  return method.plan(ctx, remove, parametersOf(method, params));
}
