/**
 * Backend selection for every command: `auto` takes the native TensorFlow backend when it loads
 * (tfjs-node-gpu, then tfjs-node), else `native` (tfjs's cpu backend with mka's native kernels,
 * native-kernels.ts: tensors bounded by RAM, not the wasm heap) when the addon loads, else
 * WebAssembly, else plain JS. On WebAssembly the matrix
 * products go through mka's own native kernels when they were built at install (native-addon.ts,
 * native-matmul.ts) unless `wasm` is asked for explicitly or `MKA_NATIVE=0`.
 */
import { requireTfjs, tf } from './tf.ts';
import { checkOption, flag } from './options.ts';
import { UserError } from './errors.ts';
import { installNativeMatMul, uninstallNativeMatMul, wasmProfile } from './native-matmul.ts';
import { NATIVE_BACKEND, registerNativeBackend } from './native-kernels.ts';
import { BACKENDS, BACKEND_OPTION, COMPUTE_CHOICES, COMPUTE_OPTION, type BackendChoice, type ComputeChoice } from './backend-choice.ts';
import { backendProfile, currentProfile, plainProfile, registerProfile, type BackendProfile, type MemoryModel } from './profile.ts';
import { loadNativeAddon } from './native-addon.ts';
import { installSoftmaxRows } from './cpu-softmax.ts';

export { BACKENDS, COMPUTE_CHOICES, type BackendChoice, type ComputeChoice };

export interface BackendInfo {
  /** The tfjs backend name in use: tensorflow, native, wasm or cpu. */
  name: string;
  /** What was chosen and why, for logs and run.json. */
  description: string;
  /** Whether matrix products run in mka's native kernels (native/, see native-addon.ts). */
  nativeMatMul: boolean;
  /** The profile registered with the backend (runtime/profile.ts). */
  profile: BackendProfile;
}

/** How --compute plays out on a profile, in one line (said once when the backend is set up). */
function describeCompute(p: BackendProfile): string {
  const bf16 = p.bf16Products;
  if (p.compute === 'float32') return 'compute float32';
  if (p.compute === 'bfloat16') {
    return bf16!.hardware ? `compute bfloat16 (bf16 products on ${bf16!.kernel})`
      : `compute bfloat16 on ${bf16!.kernel}: no bf16 products (avx512_bf16 or AMX) in use, so they run as float32 FMAs on bf16 values, slower than ${flag(COMPUTE_OPTION)} float32`;
  }
  if (bf16?.hardware) return `compute auto: bfloat16 for BF16 models (bf16 products on ${bf16.kernel}), float32 otherwise`;
  return `compute auto: float32 (${bf16 ? 'no bf16 products (avx512_bf16 or AMX) in use' : `the ${p.backend} backend has no bf16 products`}; BF16 models are widened to float32)`;
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
    requireTfjs('@tensorflow/tfjs-backend-wasm');
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
  opts: { native?: boolean; threads?: number; gradients?: boolean; compute?: ComputeChoice; log?: (msg: string) => void } = {},
): Promise<BackendInfo> {
  checkOption(BACKEND_OPTION, choice); // a library caller's value, checked as the command line's
  const compute = opts.compute ?? COMPUTE_OPTION.default;
  checkOption(COMPUTE_OPTION, compute);
  if (opts.gradients && choice === 'native') {
    throw new UserError(`${flag(BACKEND_OPTION)} native: its fused kernels have no gradients, so it cannot train; use ${flag(BACKEND_OPTION)} auto or wasm`);
  }
  const log = opts.log ?? (() => {});
  installSoftmaxRows(); // the cpu backend's (and so the native backend's) Softmax without broadcasting
  let info: Omit<BackendInfo, 'profile'> & { profile?: BackendProfile } | null = null;
  if (choice === 'tensorflow' || choice === 'auto') {
    const pkg = await tryTensorflow();
    if (pkg) info = { name: 'tensorflow', description: `tensorflow (${pkg})`, nativeMatMul: false };
    else if (choice === 'tensorflow') {
      throw new UserError(`${flag(BACKEND_OPTION)} tensorflow: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node loads (install one with libtensorflow, or use ${flag(BACKEND_OPTION)} wasm)`);
    }
  }
  if (!info && (choice === 'native' || (choice === 'auto' && !opts.gradients)) && opts.native !== false && process.env.MKA_NATIVE !== '0') {
    const native = registerNativeBackend({ threads: opts.threads });
    if (native.ok && (await tf.setBackend(NATIVE_BACKEND))) {
      info = { name: NATIVE_BACKEND, description: `native (cpu tensors + ${native.reason})`, nativeMatMul: true, profile: native.profile(compute) };
    } else if (choice === 'native') {
      throw new UserError(`${flag(BACKEND_OPTION)} native: ${native.reason} (or use ${flag(BACKEND_OPTION)} wasm)`);
    }
  }
  if (!info && (choice === 'wasm' || choice === 'auto')) {
    if (await tryWasm()) {
      const wantNative = opts.native !== false && choice === 'auto' && process.env.MKA_NATIVE !== '0';
      if (!wantNative) uninstallNativeMatMul();
      const native = wantNative ? installNativeMatMul({ threads: opts.threads }) : { ok: false, reason: 'disabled' };
      info = {
        name: 'wasm',
        description: native.ok ? `wasm + native matmul (${native.reason})` : `wasm${wantNative ? ` (native kernels unavailable, so the slower WebAssembly ones run: ${native.reason})` : ''}`,
        nativeMatMul: native.ok,
        profile: { ...wasmProfile(native.ok), compute },
      };
    } else if (choice === 'wasm') {
      throw new UserError(`${flag(BACKEND_OPTION)} wasm: @tensorflow/tfjs-backend-wasm failed to load (reinstall with npm ci)`);
    }
  }
  if (!info) {
    await tf.setBackend('cpu');
    info = { name: 'cpu', description: 'cpu (plain JavaScript)', nativeMatMul: false };
  }
  await tf.ready();
  const profile = info.profile ?? plainProfile(info.name, compute);
  registerProfile(profile);
  if (compute === 'bfloat16' && !profile.bf16Products) {
    throw new UserError(`${flag(COMPUTE_OPTION)} bfloat16: the ${info.name} backend has no bf16 products (use ${flag(BACKEND_OPTION)} native, or ${flag(COMPUTE_OPTION)} float32)`);
  }
  log(`backend: ${info.description}; ${describeCompute(profile)}`);
  return { ...info, profile };
}

/**
 * Where a training pass (gradients of the decoder's ops) runs: the current backend when its profile has
 * gradients, else WebAssembly (onGradientBackend's first choice), whose memory model bounds the pass.
 */
export function gradientMemory(): MemoryModel {
  const p = currentProfile();
  return p.gradients ? p.memory : plainProfile('wasm').memory;
}

/**
 * Runs `work` on a backend where every op the decoder runs has a gradient: the current one when its
 * profile says so, else WebAssembly (plain JS `cpu` when wasm cannot start), switching back afterwards
 * (the current backend keeps its profile). Returns what `work` returns and the backend it ran on.
 */
export async function onGradientBackend<T>(work: () => T | Promise<T>): Promise<{ value: T; backend: string }> {
  const current = currentProfile();
  if (current.gradients) return { value: await work(), backend: current.backend };
  const target = (await tryWasm()) ? 'wasm' : 'cpu';
  if (target === 'cpu' && !(await tf.setBackend('cpu'))) throw new Error('gradients: neither the wasm nor the cpu backend starts');
  try {
    return { value: await work(), backend: target };
  } finally {
    await tf.setBackend(current.backend);
  }
}

/**
 * The backend to suggest when the wasm heap is too small, and its memory model: native where its addon
 * loads, else plain JS (both keep tensors in RAM).
 */
export function offHeapBackend(): { backend: 'native' | 'cpu'; profile: MemoryModel } {
  const backend = loadNativeAddon().addon ? 'native' : 'cpu';
  return { backend, profile: backendProfile(backend) };
}
