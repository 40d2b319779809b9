/**
 * A full garbage collection on demand, for phases that drop large arrays just before others are
 * written: V8 counts an array's bytes when it is allocated, not when its pages are first written, and
 * collects dropped arrays only when allocation asks it to, so hundreds of MB of them can sit beside a
 * phase that writes into memory allocated earlier (GPTQ's Hessian spread to its whole matrix). The
 * `gc` function comes from a fresh context once --expose-gc is set (as Jest's leak detector gets it),
 * or is the process's own when Node runs with --expose-gc.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Collects every unreachable object now (a full, blocking collection: tens of ms on mka's small heaps). */
export function collectGarbage(): void {
  const own = (globalThis as { gc?: () => void }).gc;
  if (own) return own();
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
