/**
 * Native BLAS matrix products for the wasm backend. Placeholder until the addon lands: reports that
 * it is unavailable, so the plain WebAssembly kernels are used.
 */
export function installNativeMatMul(_opts: { threads?: number } = {}): { ok: boolean; reason: string } {
  return { ok: false, reason: 'native addon not built' };
}
