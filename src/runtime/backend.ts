/**
 * Backend selection for every command: `auto` takes the native TensorFlow backend when it loads
 * (tfjs-node-gpu, then tfjs-node), else `native` (tfjs's cpu backend with mka's native kernels,
 * native-kernels.ts: tensors bounded by RAM, not the wasm heap) when the addon loads, else
 * WebAssembly, else plain JS. On WebAssembly the matrix
 * products go through mka's own native kernels when they were built at install (native-addon.ts,
 * native-matmul.ts) unless `wasm` is asked for explicitly or `MKA_NATIVE=0`.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from './errors.ts';
import { installNativeMatMul, uninstallNativeMatMul } from './native-matmul.ts';
import { NATIVE_BACKEND, registerNativeBackend } from './native-kernels.ts';
import { BACKENDS, type BackendChoice } from './backend-choice.ts';

export { BACKENDS, type BackendChoice };

export interface BackendInfo {
  /** The tfjs backend name in use: tensorflow, native, wasm or cpu. */
  name: string;
  /** What was chosen and why, for logs and run.json. */
  description: string;
  /** Whether matrix products run in mka's native kernels (native/, see native-addon.ts). */
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
 * Sets the tfjs backend. `native` (default true) lets the wasm backend use the native kernels;
 * `threads` sets their thread count (default: all cores); `gradients` asks for a backend where every
 * op has a gradient (training), which `auto` then never resolves to `native`.
 */
export async function initBackend(
  choice: BackendChoice = 'auto',
  opts: { native?: boolean; threads?: number; gradients?: boolean; log?: (msg: string) => void } = {},
): Promise<BackendInfo> {
  if (!(BACKENDS as readonly string[]).includes(choice)) {
    throw new UserError(`--backend ${choice} is not one of ${BACKENDS.join(', ')}`);
  }
  if (opts.gradients && choice === 'native') {
    throw new UserError('--backend native: its fused kernels have no gradients, so it cannot train; use --backend auto or wasm');
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
  if (!info && (choice === 'native' || (choice === 'auto' && !opts.gradients)) && opts.native !== false && process.env.MKA_NATIVE !== '0') {
    const native = registerNativeBackend({ threads: opts.threads });
    if (native.ok && (await tf.setBackend(NATIVE_BACKEND))) {
      info = { name: NATIVE_BACKEND, description: `native (cpu tensors + ${native.reason})`, nativeMatMul: true };
    } else if (choice === 'native') {
      throw new UserError(`--backend native: ${native.reason} (or use --backend wasm)`);
    }
  }
  if (!info && (choice === 'wasm' || choice === 'auto')) {
    if (await tryWasm()) {
      const wantNative = opts.native !== false && choice === 'auto' && process.env.MKA_NATIVE !== '0';
      if (!wantNative) uninstallNativeMatMul();
      const native = wantNative ? installNativeMatMul({ threads: opts.threads }) : { ok: false, reason: 'disabled' };
      info = {
        name: 'wasm',
        description: native.ok ? `wasm + native matmul (${native.reason})` : `wasm${wantNative ? ` (native matmul unavailable: ${native.reason})` : ''}`,
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
