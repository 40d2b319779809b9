/**
 * TensorFlow.js for every module of mka: `import { tf } from '../runtime/tf.ts'`, then `tf.matMul(...)` and
 * types as `tf.Tensor4D`, as with `import * as tf from '@tensorflow/tfjs'`. The package is loaded with
 * `require`: imported as an ES module, Node parses its CommonJS bundles and the ones they re-export (7 MB of
 * JavaScript) to list their exports, about 0.25 CPU-s at every start of a process that uses tfjs. Source
 * maps, when on (tsx, `node --enable-source-maps`), are off while it loads: Node would otherwise parse the
 * bundles' 16 MB of maps too.
 */
import { createRequire } from 'node:module';
import type * as Tfjs from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);

/** Loads a tfjs package (`@tensorflow/tfjs-backend-wasm`, ...) as `tf` is loaded; throws when it is not installed. */
export function requireTfjs<T>(pkg: string): T {
  const maps = (process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled === true;
  if (maps) process.setSourceMapsEnabled(false);
  try {
    return require(pkg) as T;
  } finally {
    if (maps) process.setSourceMapsEnabled(true);
  }
}

export const tf: typeof Tfjs = requireTfjs<typeof Tfjs>('@tensorflow/tfjs');

/** The tfjs types mka's modules name as `tf.X` (add one here when a module needs another). */
export declare namespace tf {
  export type Tensor<R extends Tfjs.Rank = Tfjs.Rank> = Tfjs.Tensor<R>;
  export type Scalar = Tfjs.Scalar;
  export type Tensor1D = Tfjs.Tensor1D;
  export type Tensor2D = Tfjs.Tensor2D;
  export type Tensor3D = Tfjs.Tensor3D;
  export type Tensor4D = Tfjs.Tensor4D;
  export type Variable<R extends Tfjs.Rank = Tfjs.Rank> = Tfjs.Variable<R>;
  export type DataType = Tfjs.DataType;
  export type TensorInfo = Tfjs.TensorInfo;
  export type NamedTensorMap = Tfjs.NamedTensorMap;
  export type NamedAttrMap = Tfjs.NamedAttrMap;
  export type KernelConfig = Tfjs.KernelConfig;
  export type KernelFunc = Tfjs.KernelFunc;
  export type MathBackendCPU = Tfjs.MathBackendCPU;
}
