/**
 * Backend selection for every command: `auto` takes the native TensorFlow backend when it loads
 * (tfjs-node-gpu, then tfjs-node), else WebAssembly, else plain JS. On WebAssembly the matrix
 * products go through the native BLAS addon when it was built (see native-matmul.ts) unless
 * `wasm` is asked for explicitly or `MKA_NATIVE=0`.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from './errors.ts';
import { installNativeMatMul, uninstallNativeMatMul } from './native-matmul.ts';

import { BACKENDS, type BackendChoice } from './backend-choice.ts';

export { BACKENDS, type BackendChoice };

export interface BackendInfo {
  /** The tfjs backend name in use: tensorflow, wasm or cpu. */
  name: string;
  /** What was chosen and why, for logs and run.json. */
  description: string;
  /** Whether matrix products run in the native BLAS addon. */
  nativeMatMul: boolean;
}

async function tryTensorflow(): Promise<string | null> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      if (await tf.setBackend('tensorflow')) return pkg;
    } catch {
      // not installed, or libtensorflow missing: try the next one
    }
  }
  return null;
}

async function tryWasm(): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    return await tf.setBackend('wasm');
  } catch {
    return false;
  }
}

/**
 * Sets the tfjs backend. `native` (default true) lets the wasm backend use the BLAS addon;
 * `threads` sets its thread count (default: all cores).
 */
export async function initBackend(
  choice: BackendChoice = 'auto',
  opts: { native?: boolean; threads?: number; log?: (msg: string) => void } = {},
): Promise<BackendInfo> {
  if (!(BACKENDS as readonly string[]).includes(choice)) {
    throw new UserError(`--backend ${choice} is not one of ${BACKENDS.join(', ')}`);
  }
  const log = opts.log ?? (() => {});
  let info: BackendInfo | null = null;
  if (choice === 'tensorflow' || choice === 'auto') {
    const pkg = await tryTensorflow();
    if (pkg) info = { name: 'tensorflow', description: `tensorflow (${pkg})`, nativeMatMul: false };
    else if (choice === 'tensorflow') {
      throw new UserError('--backend tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads (install one with libtensorflow, or use --backend wasm)');
    }
  }
  if (!info && (choice === 'wasm' || choice === 'auto')) {
    if (await tryWasm()) {
      const wantNative = opts.native !== false && choice === 'auto' && process.env.MKA_NATIVE !== '0';
      if (!wantNative) uninstallNativeMatMul();
      const native = wantNative ? installNativeMatMul({ threads: opts.threads }) : { ok: false, reason: 'disabled' };
      info = {
        name: 'wasm',
        description: native.ok ? `wasm + native BLAS matmul (${native.reason})` : `wasm${wantNative ? ` (native matmul unavailable: ${native.reason})` : ''}`,
        nativeMatMul: native.ok,
      };
    } else if (choice === 'wasm') {
      throw new UserError('--backend wasm: @tensorflow/tfjs-backend-wasm failed to load (reinstall with npm ci)');
    }
  }
  if (!info) {
    await tf.setBackend('cpu');
    info = { name: 'cpu', description: 'cpu (plain JavaScript)', nativeMatMul: false };
  }
  await tf.ready();
  log(`backend: ${info.description}`);
  return info;
}
