/**
 * Backend profiles: what the model code needs to know about the tfjs backend in use, stated once by
 * the code that sets the backend up (backend.ts, native-kernels.ts) and registered with the backend
 * object itself. model/ and eval/ ask currentProfile() how to lay out weights, which products exist
 * and how much memory tensors take, instead of testing tf.getBackend() names.
 */
import { tf } from './tf.ts';
import { BACKEND_OPTION, COMPUTE_OPTION, type ComputeChoice, type ComputeDtype } from './backend-choice.ts';
import { flag } from './options.ts';
import { UserError } from './errors.ts';

/** Where a backend keeps tensors and how they count against memory (memory-estimate.ts). */
export interface MemoryModel {
  /** Backend name, for messages. */
  backend: string;
  /** Ceiling of the memory tensors live in (the 32-bit wasm heap), or null when tensors live in RAM. */
  heapLimit: number | null;
  /** Weights stay in the checkpoint's 16-bit dtype (true) or are widened to float32 (false). */
  keeps16Bit: boolean;
  /** Attention is computed in blocks (no [heads, T, T] score matrix). */
  blockedAttention: boolean;
  /** Matrices (projections, lm_head) are held as bf16 whatever their stored dtype (--compute bfloat16). */
  bf16Matrices?: boolean;
}

export interface BackendProfile {
  /** The tfjs backend name. */
  backend: string;
  /**
   * Rows from which a float32 weight in Hugging Face layout is transposed per call and multiplied
   * untransposed (x·Wᵀ as x·(Wᵀ)), or null when the backend multiplies by Wᵀ directly. Plain wasm: 0
   * (its transposed product is an order of magnitude slower); wasm with mka's native matmul: 16.
   */
  transposeFromRows: number | null;
  /** Decoder projections and an untied lm_head are laid out as Wᵀ [in, out] once at load (plain wasm). */
  transposedProjections: boolean;
  /** BF16/F16 matrices are kept as stored and widened per tile by the kernels. */
  takes16Bit: boolean;
  /** The kernel of bf16 products and whether it is the CPU's own (vdpbf16ps, AMX) or float32 FMAs; null: none. */
  bf16Products: { kernel: string; hardware: boolean } | null;
  /** The kernel of products with contract 1's packed integer weights, or null when they cannot run. */
  integerProducts: string | null;
  /** --compute of this run. */
  compute: ComputeChoice;
  /** Every op the decoder runs has a gradient (no fused kernel without one), so a training pass runs here (backend.ts onGradientBackend). */
  gradients: boolean;
  memory: MemoryModel;
}

/** Where a profile hangs on the tfjs backend object. */
const KEY = Symbol.for('mka.backendProfile');

/** The profile of a backend nobody registered one for: plain tfjs ops, float32 weights in HF layout. */
export function plainProfile(backend: string, compute: ComputeChoice = 'auto'): BackendProfile {
  const wasm = backend === 'wasm';
  return {
    backend, transposeFromRows: wasm ? 0 : null, transposedProjections: wasm, takes16Bit: false, bf16Products: null,
    integerProducts: null, compute, gradients: true, memory: { backend, heapLimit: wasm ? WASM_HEAP_LIMIT : null, keeps16Bit: false, blockedAttention: true },
  };
}

/**
 * The memory model of a backend by name, for estimates of a backend not in use (the one to suggest):
 * the wasm heap's ceiling on wasm, 16-bit weights kept as stored where the backend's kernels take them
 * (`keeps16Bit`: the native backend's), attention in blocks everywhere.
 */
export function backendProfile(backend: string, keeps16Bit = backend === 'native'): MemoryModel {
  return { backend, heapLimit: backend === 'wasm' ? WASM_HEAP_LIMIT : null, keeps16Bit, blockedAttention: true };
}

/** The wasm heap a tfjs wasm build can address. */
export const WASM_HEAP_LIMIT = 4 * 2 ** 30;

/** Registers `profile` with the current tfjs backend (replacing an earlier one). */
export function registerProfile(profile: BackendProfile): void {
  (tf.backend() as unknown as Record<symbol, BackendProfile>)[KEY] = profile;
}

/** The current backend's profile (a plain one when none was registered). */
export function currentProfile(): BackendProfile {
  const registered = (tf.backend() as unknown as Record<symbol, BackendProfile | undefined>)[KEY];
  return registered && registered.backend === tf.getBackend() ? registered : plainProfile(tf.getBackend());
}

/**
 * The compute dtype a model's float matrices run in on this profile: --compute when it is float32 or
 * bfloat16 (a UserError when the backend has no bf16 products), float32 under int8 (which concerns
 * packed weights only), else bfloat16 for a model whose weights are bf16 (`weightsBf16`) where the CPU
 * has bf16 products, float32 otherwise.
 */
export function resolveCompute(profile: BackendProfile, weightsBf16: boolean): ComputeDtype {
  if (profile.compute === 'float32' || profile.compute === 'int8') return 'float32';
  if (profile.compute === 'bfloat16') {
    if (!profile.bf16Products) {
      throw new UserError(`${flag(COMPUTE_OPTION)} bfloat16: the ${profile.backend} backend has no bf16 products (use ${flag(BACKEND_OPTION)} native, or ${flag(COMPUTE_OPTION)} float32)`);
    }
    return 'bfloat16';
  }
  return weightsBf16 && profile.bf16Products?.hardware ? 'bfloat16' : 'float32';
}
