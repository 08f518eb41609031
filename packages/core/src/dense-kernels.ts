import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { CoreArgumentError, describeValue } from './errors.js';

// The two large products of a dense layer, as TensorFlow.js kernels of our own on the wasm backend.
//
// Why: on tfjs-backend-wasm a train step of the 3072-50-30-10 network spends most of its time in
// the first layer. matMul(X, W) repacks W for XNNPACK whenever W changed (every step), and the
// weight gradient needs an explicit transpose(X) because matMul's transposeA takes a slow path.
// These kernels (assembly/dense.ts, wasm SIMD-128) read X, W and G where tfjs keeps them (the
// kernels' module imports the tfjs module's memory) and fold the L2 term and the momentum update
// into the weight gradient. On every other backend, and when the kernels are off, the same
// functions below run the tfjs ops they replace; both paths are checked against
// @bnmlp/reference by the equivalence suite.

/** A build of the kernels: with relaxed SIMD's fused multiply-add, or plain SIMD-128. */
export type DenseKernelVariant = 'relaxed-simd' | 'simd128';
/** What to run on the wasm backend: 'auto' (relaxed-simd when the runtime validates it, else simd128), one build, or 'off' (tfjs ops). */
export type DenseKernelChoice = 'auto' | DenseKernelVariant | 'off';
export const DENSE_KERNEL_CHOICES: readonly DenseKernelChoice[] = ['auto', 'relaxed-simd', 'simd128', 'off'];

export interface DenseKernelStatus {
  readonly choice: DenseKernelChoice;
  /** The build that replaces matMul whenever wasm is the active backend, or null (tfjs ops). */
  readonly variant: DenseKernelVariant | null;
  /** Why no build runs (turned off, or why the chosen builds could not load). */
  readonly reason: string | null;
}

export interface KernelExports {
  denseForward(a: number, b: number, bias: number, out: number, m: number, k: number, n: number): void;
  denseWeightStep(
    a: number, g: number, w: number, v: number, outW: number, outV: number, scratch: number,
    m: number, k: number, n: number, decay: number, learningRate: number, momentum: number, fused: number,
  ): void;
}

/** The parts of tfjs-backend-wasm's BackendWasm the kernels use (not all of them typed upstream). */
export interface WasmBackendInternals {
  wasm: { asm?: { memory?: unknown } };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

// The WebAssembly JS API as used here (the project's lib settings carry no DOM or wasm types).
interface WasmModule { readonly __brand?: 'WebAssembly.Module' }
interface WasmMemory { readonly buffer: ArrayBuffer }
const WebAssemblyApi = (globalThis as unknown as {
  WebAssembly: {
    Memory: abstract new (...args: never[]) => WasmMemory;
    Module: new (bytes: Uint8Array) => WasmModule;
    Instance: new (module: WasmModule, imports: object) => { readonly exports: object };
    validate(bytes: Uint8Array): boolean;
  };
}).WebAssembly;

const DENSE_FORWARD = 'BnmlpDenseForward';
const DENSE_WEIGHT_STEP = 'BnmlpDenseWeightStep';

const VARIANTS: readonly DenseKernelVariant[] = ['relaxed-simd', 'simd128'];
const modules = new Map<DenseKernelVariant, WasmModule | string>();
let registered = false;
let status: DenseKernelStatus | null = null;
const instances = new WeakMap<WasmMemory, Map<DenseKernelVariant, KernelExports>>();

function wasmFile(variant: DenseKernelVariant): URL {
  // wasm/ sits beside src/ and dist/, so the same path works from sources (tests) and the build.
  return new URL(`../wasm/dense-${variant}.wasm`, import.meta.url);
}

/** The compiled module, or why it cannot run here. */
function load(variant: DenseKernelVariant): WasmModule | string {
  let found = modules.get(variant);
  if (found === undefined) {
    try {
      const bytes = readFileSync(wasmFile(variant));
      found = WebAssemblyApi.validate(bytes) ? new WebAssemblyApi.Module(bytes) : 'not supported by this runtime';
    } catch (error) {
      found = (error as Error).message.split('\n')[0];
    }
    // A failure is not cached: allowRelaxedSimd may make the relaxed build valid later.
    if (typeof found !== 'string') modules.set(variant, found);
  }
  return found;
}

/**
 * Lets this Node.js process run relaxed SIMD (f32x4.relaxed_madd: an FMA where the CPU has one),
 * which Node 20's V8 ships behind --experimental-wasm-relaxed-simd; Node 22 and later have it on.
 * This sets that V8 flag for the whole process, so it is the application's choice (the bnmlp CLI
 * makes it). Returns whether relaxed SIMD now validates; a later 'auto' choice then picks it.
 */
export function allowRelaxedSimd(): boolean {
  try {
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    // Not V8: loading tells whether the runtime has relaxed SIMD anyway.
  }
  status = null;
  return typeof load('relaxed-simd') !== 'string';
}

/**
 * Chooses what runs the dense layers' large products on the wasm backend (default: env
 * BNMLP_WASM_KERNELS, else 'auto'). Other backends always use tfjs ops. Returns the resulting
 * status: when the chosen build cannot load, `variant` is null and `reason` says why.
 */
export function configureDenseKernels(choice: DenseKernelChoice): DenseKernelStatus {
  if (!DENSE_KERNEL_CHOICES.includes(choice))
    throw new CoreArgumentError('configureDenseKernels', 'choice', `one of ${DENSE_KERNEL_CHOICES.join(', ')}`, describeValue(choice));
  if (choice === 'off') {
    status = { choice, variant: null, reason: "turned off ('off')" };
    return status;
  }
  const failures: string[] = [];
  for (const variant of choice === 'auto' ? VARIANTS : [choice]) {
    const loaded = load(variant);
    if (typeof loaded === 'string') {
      failures.push(`${variant}: ${loaded}`);
      continue;
    }
    if (!registered) registerKernels();
    registered = true;
    status = { choice, variant, reason: null };
    return status;
  }
  status = { choice, variant: null, reason: failures.join('; ') };
  return status;
}

export function denseKernelStatus(): DenseKernelStatus {
  if (status) return status;
  const fromEnv = process.env.BNMLP_WASM_KERNELS as DenseKernelChoice | undefined;
  return configureDenseKernels(fromEnv && DENSE_KERNEL_CHOICES.includes(fromEnv) ? fromEnv : 'auto');
}

function activeVariant(): DenseKernelVariant | null {
  return tf.getBackend() === 'wasm' ? (status ?? denseKernelStatus()).variant : null;
}

/** The kernels of the active build, instantiated on this tfjs wasm module's memory (once per memory). */
export function kernelExports(backend: WasmBackendInternals): KernelExports {
  const memory = backend.wasm.asm?.memory;
  if (!(memory instanceof WebAssemblyApi.Memory)) throw new Error('bnmlp dense kernels: the tfjs wasm module exports no memory');
  const variant = activeVariant() ?? 'simd128';
  let perVariant = instances.get(memory);
  if (!perVariant) instances.set(memory, (perVariant = new Map()));
  let found = perVariant.get(variant);
  if (!found) {
    const module = load(variant);
    if (typeof module === 'string') throw new Error(`bnmlp dense kernels: ${variant} unavailable: ${module}`);
    found = new WebAssemblyApi.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
    perVariant.set(variant, found);
  }
  return found;
}

function address(backend: WasmBackendInternals, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId)!.memoryOffset;
}

function registerKernels(): void {
  tf.registerKernel({
    kernelName: DENSE_FORWARD,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as WasmBackendInternals;
      const { x, w, bias } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo; bias: tf.TensorInfo };
      const [m, k] = x.shape;
      const n = w.shape[1];
      const out = b.makeOutput([m, n], 'float32');
      if (m > 0) kernelExports(b).denseForward(address(b, x), address(b, w), address(b, bias), address(b, out), m, k, n);
      return out;
    },
  });
  tf.registerKernel({
    kernelName: DENSE_WEIGHT_STEP,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as WasmBackendInternals;
      const { x, g, w, v } = inputs as { x: tf.TensorInfo; g: tf.TensorInfo; w: tf.TensorInfo; v?: tf.TensorInfo };
      const { decay, learningRate, momentum } = attrs as { decay: number; learningRate: number; momentum: number };
      const [m, k] = x.shape;
      const n = g.shape[1];
      const outW = b.makeOutput([k, n], 'float32');
      const outV = v ? b.makeOutput([k, n], 'float32') : null;
      // m rows × 16 floats: the kernel's contiguous copy of 16 columns of x at a time.
      const scratch = b.makeOutput([m, 16], 'float32');
      try {
        kernelExports(b).denseWeightStep(
          address(b, x), address(b, g), address(b, w), v ? address(b, v) : 0, address(b, outW), outV ? address(b, outV) : 0, address(b, scratch),
          m, k, n, decay, learningRate, momentum, v ? 1 : 0,
        );
      } finally {
        b.disposeData(scratch.dataId, true);
      }
      return outV ? [outW, outV] : outW;
    },
  });
}

// The functions the network uses. No validation: they run inside tf.tidy on shapes the public
// entry points already checked.

/**
 * x·W + b. `weightsReused`: W will be multiplied again unchanged (inference). XNNPACK then keeps
 * its packed copy of W, and its matMul beats the plain SIMD-128 kernel (not the relaxed one).
 */
export function denseScores(x: tf.Tensor2D, w: tf.Tensor2D, b: tf.Tensor1D, weightsReused = false): tf.Tensor2D {
  const variant = activeVariant();
  if (variant === 'relaxed-simd' || (variant === 'simd128' && !weightsReused)) return tf.engine().runKernel(DENSE_FORWARD, { x, w, bias: b }) as tf.Tensor2D;
  return tf.add(tf.matMul(x, w), b);
}

/** ∂J/∂W = xᵀ·g + 2λW for J = loss + λ‖W‖², where g = ∂loss/∂(x·W + b). */
export function denseWeightGradient(x: tf.Tensor2D, g: tf.Tensor2D, w: tf.Tensor2D, lambda: number): tf.Tensor2D {
  if (activeVariant()) return tf.engine().runKernel(DENSE_WEIGHT_STEP, { x, g, w }, { decay: 2 * lambda, learningRate: 0, momentum: 0 }) as tf.Tensor2D;
  // On wasm, matMul's transposeA flag takes a slow path, hence the explicit transpose.
  const product = tf.matMul(tf.transpose(x), g) as tf.Tensor2D;
  return lambda === 0 ? product : tf.add(product, tf.mul(w, 2 * lambda));
}

/**
 * The momentum step of W from the same gradient, without materializing it on the kernel path:
 * v' = ρ·v + η·(xᵀ·g + 2λW), W' = W − v'. Returns new tensors (the caller assigns them).
 */
export function denseMomentumStep(
  x: tf.Tensor2D, g: tf.Tensor2D, w: tf.Tensor2D, v: tf.Tensor2D, settings: { lambda: number; learningRate: number; momentum: number },
): { w: tf.Tensor2D; v: tf.Tensor2D } {
  const { lambda, learningRate, momentum } = settings;
  if (activeVariant()) {
    const [nextW, nextV] = tf.engine().runKernel(DENSE_WEIGHT_STEP, { x, g, w, v }, { decay: 2 * lambda, learningRate, momentum }) as tf.Tensor2D[];
    return { w: nextW, v: nextV };
  }
  const nextV = tf.add(tf.mul(v, momentum), tf.mul(denseWeightGradient(x, g, w, lambda), learningRate)) as tf.Tensor2D;
  return { w: tf.sub(w, nextV), v: nextV };
}
