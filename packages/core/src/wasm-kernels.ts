import * as tf from '@tensorflow/tfjs-core';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import v8 from 'node:v8';
import { DenseThreads, packedFloats, type DenseKernels, type RowsRef, type TensorRef } from './dense-threads.js';
export { RESTART_FOR_SOURCE_BYTES } from './dense-threads.js';
import { CoreArgumentError, describeValue } from './errors.js';

// TensorFlow.js kernels of our own on the wasm backend (AssemblyScript sources in assembly/).
//
// Why: on tfjs-backend-wasm a train step of the 3072-50-30-10 network spends most of its time in
// the first layer. matMul(X, W) repacks W for XNNPACK whenever W changed (every step), and the
// weight gradient needs an explicit transpose(X) because matMul's transposeA takes a slow path.
// The dense kernels (assembly/dense.ts, wasm SIMD-128) read X, W and G where tfjs keeps them (the
// kernels' module imports the tfjs module's memory) and fold the L2 term and the momentum update
// into the weight gradient. What is left is many small ops, each paying tfjs's per-kernel cost:
// assembly/batch-norm.ts does training-mode BN + ReLU forward and backward, and the small
// momentum and running-average updates, in one kernel each.
// On every other backend, and when the kernels are off, the functions below run tfjs ops instead
// (here, or where they return null, in network.ts and train-step.ts); both paths are checked
// against @bnmlp/reference by the equivalence suite.

/** A build of the kernels: with relaxed SIMD's fused multiply-add, or plain SIMD-128. */
export type WasmKernelVariant = 'relaxed-simd' | 'simd128';
/** What to run on the wasm backend: 'auto' (relaxed-simd when the runtime validates it, else simd128), one build, or 'off' (tfjs ops). */
export type WasmKernelChoice = 'auto' | WasmKernelVariant | 'off';
export const WASM_KERNEL_CHOICES: readonly WasmKernelChoice[] = ['auto', 'relaxed-simd', 'simd128', 'off'];

export interface WasmKernelStatus {
  readonly choice: WasmKernelChoice;
  /** The build whose kernels run whenever wasm is the active backend, or null (tfjs ops). */
  readonly variant: WasmKernelVariant | null;
  /** Why no build runs (turned off, or why the chosen builds could not load). */
  readonly reason: string | null;
  /** Threads the dense layers' large products run on (1: the unthreaded kernels; see configureKernelThreads). */
  readonly threads: number;
  /** Why fewer threads run than were asked for, or null. */
  readonly threadsReason: string | null;
}

/** Thread counts: a number ≥ 1, or 'auto' (this machine's available parallelism, at most MAX_KERNEL_THREADS). */
export type KernelThreadsChoice = number | 'auto';
export const MAX_KERNEL_THREADS = 8;

/** The kernels module's exports (assembly/index.ts); the dense two are also what the threads run. */
export interface KernelExports extends DenseKernels {
  batchNormReluForward(
    s: number, gamma: number, beta: number, mean: number, variance: number, invStd: number,
    normalized: number, pre: number, relu: number, scratch: number, n: number, d: number, eps: number,
  ): void;
  batchNormReluInference(s: number, mean: number, invStd: number, gamma: number, beta: number, relu: number, n: number, d: number): void;
  batchNormReluBackward(
    gOut: number, pre: number, normalized: number, invStd: number, gamma: number,
    dGamma: number, dBeta: number, gS: number, scratch: number, n: number, d: number,
  ): void;
  momentumStep(theta: number, v: number, g: number, outTheta: number, outV: number, len: number, learningRate: number, momentum: number): void;
  blend(a: number, b: number, out: number, len: number, alpha: number): void;
  sumSquares(x: number, out: number, len: number): void;
  softmaxCrossEntropy(z: number, y: number, grad: number, loss: number, n: number, c: number): void;
}

/** The parts of tfjs-backend-wasm's BackendWasm the kernels use (not all of them typed upstream). */
export interface WasmBackendInternals {
  wasm: { asm?: { memory?: unknown } };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined; has(dataId: object): boolean };
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
  refCount(dataId: object): number;
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
const BN_RELU_FORWARD = 'BnmlpBatchNormReluForward';
const BN_RELU_BACKWARD = 'BnmlpBatchNormReluBackward';
const BN_RELU_INFERENCE = 'BnmlpBatchNormReluInference';
const DENSE_INPUT_GRADIENT = 'BnmlpDenseInputGradient';
const MOMENTUM_STEPS = 'BnmlpMomentumSteps';
const BLENDS = 'BnmlpBlends';
const SUM_SQUARES = 'BnmlpSumSquares';
const SOFTMAX_CROSS_ENTROPY = 'BnmlpSoftmaxCrossEntropy';

const VARIANTS: readonly WasmKernelVariant[] = ['relaxed-simd', 'simd128'];
const modules = new Map<string, WasmModule | string>();
let registered = false;
let status: ChoiceStatus | null = null;
const instances = new WeakMap<WasmMemory, Map<WasmKernelVariant, KernelExports>>();

function wasmFile(variant: WasmKernelVariant | `${WasmKernelVariant}-shared`): URL {
  // For test builds only: BNMLP_WASM_KERNELS_DIR names a directory holding kernels-<variant>.wasm
  // built elsewhere (packages/core/scripts/kernel-mutants.mjs runs the kernel suites against planted
  // bugs this way, never touching wasm/). Read once per variant, when the module is first loaded.
  const dir = process.env.BNMLP_WASM_KERNELS_DIR;
  if (dir) return pathToFileURL(join(dir, `kernels-${variant}.wasm`));
  // wasm/ sits beside src/ and dist/, so the same path works from sources (tests) and the build.
  return new URL(`../wasm/kernels-${variant}.wasm`, import.meta.url);
}

/** The compiled module, or why it cannot run here. */
function load(variant: WasmKernelVariant | `${WasmKernelVariant}-shared`): WasmModule | string {
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
  const relaxed = typeof load('relaxed-simd') !== 'string';
  // Re-evaluate the current choice (an 'auto' may now pick relaxed-simd); never drop it for the default.
  if (status) configureWasmKernels(status.choice);
  return relaxed;
}

type ChoiceStatus = Pick<WasmKernelStatus, 'choice' | 'variant' | 'reason'>;

/**
 * Chooses what runs the dense layers, batch norm and updates on the wasm backend (default: env
 * BNMLP_WASM_KERNELS, else 'auto'). Other backends always use tfjs ops. Returns the resulting
 * status: when the chosen build cannot load, `variant` is null and `reason` says why.
 */
export function configureWasmKernels(choice: WasmKernelChoice): WasmKernelStatus {
  if (!WASM_KERNEL_CHOICES.includes(choice))
    throw new CoreArgumentError('configureWasmKernels', 'choice', `one of ${WASM_KERNEL_CHOICES.join(', ')}`, describeValue(choice));
  status = chooseVariant(choice);
  return wasmKernelStatus();
}

function chooseVariant(choice: WasmKernelChoice): ChoiceStatus {
  if (choice === 'off') return { choice, variant: null, reason: "turned off ('off')" };
  const failures: string[] = [];
  for (const variant of choice === 'auto' ? VARIANTS : [choice]) {
    const loaded = load(variant);
    if (typeof loaded === 'string') {
      failures.push(`${variant}: ${loaded}`);
      continue;
    }
    if (!registered) registerKernels();
    registered = true;
    return { choice, variant, reason: null };
  }
  return { choice, variant: null, reason: failures.join('; ') };
}

export function wasmKernelStatus(): WasmKernelStatus {
  const fromEnv = process.env.BNMLP_WASM_KERNELS as WasmKernelChoice | undefined;
  status ??= chooseVariant(fromEnv && WASM_KERNEL_CHOICES.includes(fromEnv) ? fromEnv : 'auto');
  const refused = tf.getBackend() === 'wasm' ? unusable.get(tf.backend()) : undefined;
  const current: ChoiceStatus = refused && status.variant ? { choice: status.choice, variant: null, reason: refused } : status;
  const threads = current.variant ? threadsFor(current.variant) : { threads: 1, reason: 'no kernel build runs' };
  return { ...current, threads: threads.threads, threadsReason: threads.reason };
}

// Threads for the dense kernels (src/dense-threads.ts): one pool at a time, for the active build
// and the configured count, started on first use and kept until the configuration changes.
let threadsWanted: number | null = null;
let minThreadedWork = 1 << 20;
let adaptiveThreads = true;
let pool: { variant: WasmKernelVariant; threads: DenseThreads } | null = null;
const threadFailures = new Map<WasmKernelVariant, string>();
const WORKER_URL = new URL('../worker/dense-worker.mjs', import.meta.url);

function wantedThreads(): number {
  if (threadsWanted === null) {
    const fromEnv = process.env.BNMLP_THREADS;
    const parsed = fromEnv === undefined || fromEnv === 'auto' ? NaN : Number(fromEnv);
    threadsWanted = Number.isInteger(parsed) && parsed >= 1 && parsed <= MAX_KERNEL_THREADS ? parsed : Math.min(availableParallelism(), MAX_KERNEL_THREADS);
  }
  return threadsWanted;
}

/**
 * How many threads compute the dense layers' large products (x·W and the weight step) when our
 * kernels run on wasm: 'auto' (default; or env BNMLP_THREADS) uses this machine's available
 * parallelism, up to MAX_KERNEL_THREADS. 1 runs the unthreaded kernels in tfjs's memory. Results
 * are bit-identical for every count. `minWork`: the least m·k·n multiply-adds worth threading
 * (default 2^20; smaller products run unthreaded, which changes no result). `adaptive` (default
 * true): when the threads lose to one thread (a machine busier than its cores), run unthreaded for
 * a while, then try again (DenseThreads.adaptive); false keeps them always on. Returns the status.
 */
export function configureKernelThreads(threads: KernelThreadsChoice, options: { minWork?: number; adaptive?: boolean } = {}): WasmKernelStatus {
  const op = 'configureKernelThreads';
  if (threads !== 'auto' && !(Number.isInteger(threads) && threads >= 1 && threads <= MAX_KERNEL_THREADS))
    throw new CoreArgumentError(op, 'threads', `'auto' or an integer in [1, ${MAX_KERNEL_THREADS}]`, describeValue(threads));
  if (options.minWork !== undefined && !(Number.isInteger(options.minWork) && options.minWork >= 0))
    throw new CoreArgumentError(op, 'options.minWork', 'an integer >= 0', describeValue(options.minWork));
  threadsWanted = threads === 'auto' ? Math.min(availableParallelism(), MAX_KERNEL_THREADS) : threads;
  if (options.adaptive !== undefined && typeof options.adaptive !== 'boolean')
    throw new CoreArgumentError(op, 'options.adaptive', 'a boolean', describeValue(options.adaptive));
  if (options.minWork !== undefined) minThreadedWork = options.minWork;
  if (options.adaptive !== undefined) adaptiveThreads = options.adaptive;
  if (pool && pool.threads.threads !== threadsWanted) shutdownKernelThreads();
  if (pool) pool.threads.adaptive = adaptiveThreads;
  // Started now, so a failure to start shows in the status returned.
  const variant = (status ?? wasmKernelStatus()).variant;
  if (variant) threadPool(variant, Infinity);
  return wasmKernelStatus();
}

/** Threaded products run so far by the current pool (tests check that the threads really ran). */
export function threadedProductCount(): number {
  return pool?.threads.runs ?? 0;
}

/**
 * The current pool, for tests: its deferred outputs (Note [Deferred copies of the weight step's
 * outputs]) still waiting for their copy into the tfjs heap and the copies made so far, and the
 * rows of the last x·W the caller's thread computed itself (see shareBesideIdleTask), the gather
 * rows the threads copied, the sources they hold, and how often they were restarted to free one.
 */
export function kernelThreadStats(): {
  deferredWaiting: number; deferredCopied: number; lastForwardCallerRows: number; gatheredByThreads: number; gatherRowsLeft: number;
  gatherSourcesHeld: { count: number; kib: number }; threadRestarts: number;
} {
  const threads = pool?.threads;
  return {
    deferredWaiting: threads?.deferredCount ?? 0, deferredCopied: threads?.deferredFlushes ?? 0, lastForwardCallerRows: threads?.lastForwardCallerRows ?? 0,
    gatheredByThreads: threads?.gatheredByThreads ?? 0, gatherRowsLeft: threads?.gatherRowsLeft ?? 0, gatherSourcesHeld: threads?.sourcesHeld ?? { count: 0, kib: 0 },
    threadRestarts: threads?.restarts ?? 0,
  };
}

/**
 * A one-shot task (or null to withdraw it) for this thread to run while the kernel threads finish
 * their parts of the next threaded product, instead of waiting idle: the trainer gathers the next
 * mini-batch there. It runs inside a TensorFlow.js kernel, so it must not call TensorFlow.js. It
 * may never run (no threaded product comes, or threads are off): the caller checks and does the
 * work itself then. This thread takes fewer rows of that product, as many fewer as the earlier
 * tasks' time would compute (dense-threads.ts shareBesideIdleTask), so the threads finish together.
 */
export function setKernelIdleTask(task: (() => void) | null): void {
  if (pool) pool.threads.idleTask = task;
}

/** A gather started by gatherRowsInBackground. */
export interface BackgroundGather {
  /**
   * Completes the gather: this thread copies the rows the kernel thread has not taken yet, while
   * it finishes its current one. Call it before reading the target; calling it again does nothing.
   */
  finish(): void;
}

/**
 * Starts copying row rowIndices[r] of `source` (`cols` floats per row) to row r of `target` on a
 * kernel thread, for the trainer's next mini-batch: the thread copies rows whenever it has no
 * part of a threaded product to compute (during a train step, while this thread runs the small
 * layers), and finish() copies the rest here. The result is the same as copying them here.
 * Returns null when no kernel thread can: threads off (or the pool cannot run), `source` not
 * on a SharedArrayBuffer (the thread cannot see it), or `target` not a createBatchBuffer array
 * in the threads' memory; copy the rows here then. One gather at a time: starting one finishes
 * the last. The thread holds on to `source`'s buffer (at most 2 at a time: a third drops the
 * oldest) until forgetGatherSource. Neither `source` nor `target` may be written until finish().
 */
export function gatherRowsInBackground(source: Float32Array, cols: number, rowIndices: Int32Array, target: Float32Array): BackgroundGather | null {
  const op = 'gatherRowsInBackground';
  if (!(source instanceof Float32Array)) throw new CoreArgumentError(op, 'source', 'a Float32Array', describeValue(source));
  if (!Number.isInteger(cols) || cols < 1 || source.length % cols !== 0)
    throw new CoreArgumentError(op, 'cols', `an integer >= 1 dividing source.length (${source.length})`, describeValue(cols));
  if (!(rowIndices instanceof Int32Array)) throw new CoreArgumentError(op, 'rowIndices', 'an Int32Array', describeValue(rowIndices));
  const sourceRows = source.length / cols;
  for (let r = 0; r < rowIndices.length; r++) {
    const row = rowIndices[r];
    if (!(row >= 0 && row < sourceRows)) throw new CoreArgumentError(op, `rowIndices[${r}]`, `a row in [0, ${sourceRows})`, String(row));
  }
  if (!(target instanceof Float32Array) || target.length < rowIndices.length * cols)
    throw new CoreArgumentError(op, 'target', `a Float32Array of at least ${rowIndices.length * cols} floats (rows × cols)`, describeValue(target));
  const variant = tf.engine().backendName === 'wasm' ? activeVariant() : null;
  const threads = variant && rowIndices.length > 0 ? startedPool(variant) : null;
  return threads?.startGather(source, cols, rowIndices, target) ?? null;
}

/**
 * Lets the kernel threads drop their hold on `source`'s buffer (see gatherRowsInBackground),
 * finishing a gather from it first. A source of RESTART_FOR_SOURCE_BYTES or more also restarts
 * the threads on the same memory (batch buffers stay valid), since only that frees it: see
 * dense-threads.ts RESTART_FOR_SOURCE_BYTES. The same holds for a source the threads drop
 * because they hold 2 others.
 */
export function forgetGatherSource(source: Float32Array): void {
  pool?.threads.forgetGatherSource(source.buffer);
}

/** Ends the kernel threads (they restart on the next threaded product). Safe to call at any time. */
export function shutdownKernelThreads(): void {
  pool?.threads.shutdown();
  pool = null;
}

/** The threads that would run `variant`'s products, and why fewer than wanted. */
function threadsFor(variant: WasmKernelVariant): { threads: number; reason: string | null } {
  const wanted = wantedThreads();
  if (wanted === 1) return { threads: 1, reason: null };
  const failure = threadFailures.get(variant) ?? (pool?.variant === variant ? pool.threads.failure : null);
  if (failure) return { threads: 1, reason: failure };
  return { threads: wanted, reason: null };
}

/** Whether a product of `work` multiply-adds would run on threads (as far as is known before trying). */
function willThread(work: number): boolean {
  const variant = status?.variant;
  return !!variant && wantedThreads() > 1 && work >= minThreadedWork && !threadFailures.has(variant);
}

/** The pool for a product of m·k·n multiply-adds on `variant`, or null: run unthreaded. */
function threadPool(variant: WasmKernelVariant, work: number): DenseThreads | null {
  if (work < minThreadedWork) return null;
  const threads = startedPool(variant);
  return threads && !threads.shouldBackOff() ? threads : null;
}

/** The running pool for `variant` (started now if need be), or null: one thread wanted, or the threads cannot run. */
function startedPool(variant: WasmKernelVariant): DenseThreads | null {
  const wanted = wantedThreads();
  if (wanted === 1 || threadFailures.has(variant)) return null;
  if (pool && (pool.variant !== variant || pool.threads.failure)) {
    if (pool.threads.failure) threadFailures.set(pool.variant, pool.threads.failure);
    shutdownKernelThreads();
    if (threadFailures.has(variant)) return null;
  }
  if (!pool) {
    try {
      if (typeof SharedArrayBuffer === 'undefined') throw new Error('SharedArrayBuffer is unavailable');
      if (!existsSync(WORKER_URL)) throw new Error(`the kernel thread script is missing (${WORKER_URL.pathname})`);
      const module = load(`${variant}-shared`);
      if (typeof module === 'string') throw new Error(`the ${variant}-shared build: ${module}`);
      pool = { variant, threads: new DenseThreads(module, wanted, WORKER_URL) };
      pool.threads.adaptive = adaptiveThreads;
    } catch (error) {
      threadFailures.set(variant, (error as Error).message.split('\n')[0]);
      return null;
    }
  }
  return pool.threads;
}

/**
 * A Float32Array for `floats` values of training batches: in the kernel threads' own memory when
 * they run, so a trainStep whose layer 1 runs there reads rows written into it in place (no copy
 * of the batch at all); else a plain array. Either way it works as any Float32Array. Give it back
 * with releaseBatchBuffer when done (a plain array needs nothing); the threads' memory is bounded
 * (1 GiB), and past that this returns plain arrays.
 */
export function createBatchBuffer(floats: number): Float32Array {
  if (!Number.isInteger(floats) || floats < 0) throw new CoreArgumentError('createBatchBuffer', 'floats', 'an integer >= 0', describeValue(floats));
  // The backend in use, without starting one (a batcher may be made before the backend is chosen).
  const variant = tf.engine().backendName === 'wasm' ? activeVariant() : null;
  const threads = variant ? startedPool(variant) : null;
  if (threads) {
    try {
      return threads.rowsBuffer(floats);
    } catch (error) {
      if ((error as Error).name !== 'DenseThreadsError') throw error;
    }
  }
  return new Float32Array(floats);
}

/** Gives back a createBatchBuffer array (it must not be used after). Other arrays are ignored. */
export function releaseBatchBuffer(buffer: Float32Array): void {
  pool?.threads.releaseRowsBuffer(buffer);
}

/** tfjs wasm modules whose memory the kernels cannot use (say, a shared memory), with why. */
const unusable = new WeakMap<object, string>();

/** The build to run for the active backend, or null: tfjs ops. */
function activeVariant(): WasmKernelVariant | null {
  if (tf.getBackend() !== 'wasm') return null;
  const variant = (status ?? wasmKernelStatus()).variant;
  if (!variant) return null;
  const backend = tf.backend() as unknown as WasmBackendInternals;
  if (unusable.has(backend)) return null;
  try {
    instanceFor(backend, variant);
    return variant;
  } catch (error) {
    unusable.set(backend, (error as Error).message);
    return null;
  }
}

/** The kernels of the active build, instantiated on this tfjs wasm module's memory (once per memory). */
export function kernelExports(backend: WasmBackendInternals): KernelExports {
  return instanceFor(backend, activeVariant() ?? 'simd128');
}

function instanceFor(backend: WasmBackendInternals, variant: WasmKernelVariant): KernelExports {
  const memory = backend.wasm.asm?.memory;
  if (!(memory instanceof WebAssemblyApi.Memory)) throw new Error('bnmlp wasm kernels: the tfjs wasm module exports no memory');
  let perVariant = instances.get(memory);
  if (!perVariant) instances.set(memory, (perVariant = new Map()));
  let found = perVariant.get(variant);
  if (!found) {
    const module = load(variant);
    if (typeof module === 'string') throw new Error(`bnmlp wasm kernels: ${variant} unavailable: ${module}`);
    found = new WebAssemblyApi.Instance(module, { env: { memory } }).exports as unknown as KernelExports;
    perVariant.set(variant, found);
  }
  return found;
}

function address(backend: WasmBackendInternals, t: tf.TensorInfo | undefined): number {
  return t ? backend.dataIdMap.get(t.dataId)!.memoryOffset : 0;
}

function heap(backend: WasmBackendInternals): ArrayBufferLike {
  return (backend.wasm.asm!.memory as WasmMemory).buffer;
}

function ref(backend: WasmBackendInternals, t: tf.TensorInfo): TensorRef {
  return { dataId: t.dataId, offset: address(backend, t) };
}

// Note [Deferred copies of the weight step's outputs]
// A threaded momentum step of W (trainStep's) leaves the new W and velocity in the kernel threads'
// memory, kept there for the next step, and does not copy them into their tfjs tensors at once:
// in training nothing reads those tensors between steps (the next x·W and weight step read the
// kept copies), and each is freed a step later. At 3072 × 50 that copy was 1.2 MB per step. It
// is made when something reads the tensor: every read of a wasm tensor's memory (a tfjs kernel,
// ours, dataSync) first finds its data through backend.dataIdMap.get, which hookDeferredCopies
// wraps to copy a deferred output in first. Freeing such a tensor unread drops its copy. The pool
// copies a deferred output out before its kept region is reused, and all of them at shutdown.
// The threaded products look W and v up without the hook (rawRef): the pool reads its kept copy
// of a deferred tensor, never the tensor's stale memory (every deferred output is kept).
const rawLookUps = new WeakMap<object, (dataId: object) => { memoryOffset: number } | undefined>();

function hookDeferredCopies(backend: WasmBackendInternals): void {
  if (rawLookUps.has(backend)) return;
  const storage = backend.dataIdMap;
  const lookUp = storage.get.bind(storage);
  rawLookUps.set(backend, lookUp);
  // Reference counting looks data up too, without reading it: no copy for that.
  let counting = false;
  storage.get = (dataId) => {
    if (!counting && pool?.threads.hasDeferred(dataId)) pool.threads.flushDeferred(dataId);
    return lookUp(dataId);
  };
  const countingOnly = <A extends unknown[], R>(f: (...args: A) => R) => (...args: A): R => {
    counting = true;
    try {
      return f(...args);
    } finally {
      counting = false;
    }
  };
  const disposeData = countingOnly(backend.disposeData.bind(backend));
  backend.disposeData = (dataId, force) => {
    const freed = disposeData(dataId, force);
    if (!storage.has(dataId)) pool?.threads.dropDeferred(dataId);
    return freed;
  };
  backend.incRef = countingOnly(backend.incRef.bind(backend));
  backend.refCount = countingOnly(backend.refCount.bind(backend));
}

/** ref, looked up past hookDeferredCopies: for W and v of a threaded product, which reads the pool's kept copies of deferred tensors. */
function rawRef(backend: WasmBackendInternals, t: tf.TensorInfo): TensorRef {
  const lookUp = rawLookUps.get(backend);
  return { dataId: t.dataId, offset: (lookUp ? lookUp(t.dataId) : backend.dataIdMap.get(t.dataId))!.memoryOffset };
}

/** Runs a threaded product; false (after which the caller runs it unthreaded) when the threads cannot. */
function tryThreaded(product: () => void): boolean {
  try {
    product();
    return true;
  } catch (error) {
    if ((error as Error).name !== 'DenseThreadsError') throw error;
    return false;
  }
}

/** a[m×k]·W[k×n] + bias in the tfjs heap, unthreaded: W packed into scratch, then the packed kernel (its sums are the threads'). */
function denseForwardInHeap(backend: WasmBackendInternals, a: number, w: number, bias: number, out: number, m: number, k: number, n: number): void {
  const packed = packedFloats(k, n);
  const kernels = kernelExports(backend);
  withScratch(backend, packed + kernels.forwardTileFloats(), (scratch) => {
    kernels.packPanels(w, scratch, k, n, 0, k);
    kernels.denseForwardPacked(a, scratch, bias, out, scratch + 4 * packed, m, k, n);
  });
}

/** Runs `body` with a float32 scratch buffer of `floats` entries, freed afterwards. */
function withScratch(backend: WasmBackendInternals, floats: number, body: (scratch: number) => void): void {
  const scratch = backend.makeOutput([floats], 'float32');
  try {
    body(address(backend, scratch));
  } finally {
    backend.disposeData(scratch.dataId, true);
  }
}

/**
 * srcᵀ (src: rows × cols) in the panel layout of assembly/dense.ts packPanels, as packPanels of
 * the transpose would write it (columns past rows as 0), without the transpose in between.
 */
function packTransposedInHeap(backend: WasmBackendInternals, src: number, dst: number, rows: number, cols: number): void {
  const heap32 = new Float32Array(heap(backend));
  const from = src >>> 2;
  let to = dst >>> 2;
  for (let q = 0; q < rows; q += 8) {
    for (let p = 0; p < cols; p++) {
      for (let c = 0; c < 8; c++) heap32[to + c] = q + c < rows ? heap32[from + (q + c) * cols + p] : 0;
      to += 8;
    }
  }
}

/** dst[cols×rows] = src[rows×cols]ᵀ, both float32 buffers in the tfjs heap (byte offsets). */
function transposeInHeap(backend: WasmBackendInternals, src: number, dst: number, rows: number, cols: number): void {
  const heap32 = new Float32Array(heap(backend));
  const from = src >>> 2;
  const to = dst >>> 2;
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) heap32[to + j * rows + i] = heap32[from + i * cols + j];
}

const sizeOf = (shape: readonly number[]): number => shape.reduce((p, q) => p * q, 1);

type Inputs = Record<string, tf.TensorInfo | undefined>;

/** Registers a kernel of ours for the wasm backend. */
function register(kernelName: string, run: (b: WasmBackendInternals, inputs: Inputs, attrs: Record<string, number>) => tf.TensorInfo | tf.TensorInfo[]): void {
  tf.registerKernel({
    kernelName,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => run(backend as unknown as WasmBackendInternals, inputs as Inputs, attrs as Record<string, number>),
  });
}

function registerKernels(): void {
  register(DENSE_FORWARD, (b, inputs) => {
    const { x, w, bias } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo; bias?: tf.TensorInfo };
    const [m, k] = x.shape;
    const n = w.shape[1];
    const out = b.makeOutput([m, n], 'float32');
    if (m === 0) return out;
    const threads = threadPool(activeVariant() ?? 'simd128', m * k * n);
    if (threads && tryThreaded(() => threads.forward(heap(b), ref(b, x), rawRef(b, w), bias ? ref(b, bias) : null, address(b, out), m, k, n))) return out;
    denseForwardInHeap(b, address(b, x), address(b, w), address(b, bias), address(b, out), m, k, n);
    return out;
  });
  register(DENSE_WEIGHT_STEP, (b, inputs, attrs) => {
    const { x, g, w, v } = inputs as { x: tf.TensorInfo; g: tf.TensorInfo; w: tf.TensorInfo; v?: tf.TensorInfo };
    const { decay, learningRate, momentum } = attrs;
    const [m, k] = x.shape;
    const n = g.shape[1];
    const outW = b.makeOutput([k, n], 'float32');
    const outV = v ? b.makeOutput([k, n], 'float32') : null;
    const threads = threadPool(activeVariant() ?? 'simd128', m * k * n);
    // A momentum step's outputs wait in the threads' memory until read (Note [Deferred copies of the weight step's outputs]).
    if (threads && v) hookDeferredCopies(b);
    const threaded = threads && tryThreaded(() =>
      threads.weightStep(
        heap(b), ref(b, x), ref(b, g), rawRef(b, w), v ? rawRef(b, v) : null, ref(b, outW), outV ? ref(b, outV) : null, m, k, n, decay, learningRate, momentum,
        v ? () => heap(b) : null,
      ),
    );
    // m rows × 16 floats: the kernel's contiguous copy of 16 columns of x at a time.
    if (!threaded)
      withScratch(b, m * 16, (scratch) =>
        kernelExports(b).denseWeightStep(
          address(b, x), address(b, g), address(b, w), address(b, v), address(b, outW), outV ? address(b, outV) : 0, scratch,
          m, k, n, decay, learningRate, momentum, v ? 1 : 0, 0, k, 0,
        ),
      );
    return outV ? [outW, outV] : outW;
  });
  register(BN_RELU_FORWARD, (b, inputs, attrs) => {
    const { s, gamma, beta } = inputs as Inputs;
    const [n, d] = s!.shape;
    const [mean, variance, invStd] = [0, 1, 2].map(() => b.makeOutput([d], 'float32'));
    const [normalized, pre, relu] = [0, 1, 2].map(() => b.makeOutput([n, d], 'float32'));
    withScratch(b, 2 * d, (scratch) =>
      kernelExports(b).batchNormReluForward(
        address(b, s), address(b, gamma), address(b, beta), address(b, mean), address(b, variance), address(b, invStd),
        address(b, normalized), address(b, pre), address(b, relu), scratch, n, d, attrs.eps,
      ),
    );
    return [mean, variance, invStd, normalized, pre, relu];
  });
  register(BN_RELU_INFERENCE, (b, inputs) => {
    const { s, mean, invStd, gamma, beta } = inputs as Inputs;
    const [n, d] = s!.shape;
    const relu = b.makeOutput([n, d], 'float32');
    kernelExports(b).batchNormReluInference(
      address(b, s), address(b, mean), address(b, invStd), address(b, gamma), address(b, beta), address(b, relu), n, d,
    );
    return relu;
  });
  register(BN_RELU_BACKWARD, (b, inputs) => {
    const { g, pre, normalized, invStd, gamma } = inputs as Inputs;
    const [n, d] = g!.shape;
    const gS = b.makeOutput([n, d], 'float32');
    const dGamma = b.makeOutput([d], 'float32');
    const dBeta = b.makeOutput([d], 'float32');
    withScratch(b, 8 * d, (scratch) =>
      kernelExports(b).batchNormReluBackward(
        address(b, g), address(b, pre), address(b, normalized), address(b, invStd), address(b, gamma),
        address(b, dGamma), address(b, dBeta), address(b, gS), scratch, n, d,
      ),
    );
    return [gS, dGamma, dBeta];
  });
  // Every parameter's momentum step in one kernel (count pairs theta{i}, v{i}, optional g{i}):
  // tfjs's per-kernel cost is most of what a small update costs.
  register(MOMENTUM_STEPS, (b, inputs, attrs) => {
    const { count, learningRate, momentum } = attrs;
    const outputs: tf.TensorInfo[] = [];
    for (let i = 0; i < count; i++) {
      const theta = inputs[`theta${i}`]!;
      const outTheta = b.makeOutput(theta.shape, 'float32');
      const outV = b.makeOutput(theta.shape, 'float32');
      kernelExports(b).momentumStep(
        address(b, theta), address(b, inputs[`v${i}`]), address(b, inputs[`g${i}`]), address(b, outTheta), address(b, outV),
        sizeOf(theta.shape), learningRate, momentum,
      );
      outputs.push(outTheta, outV);
    }
    return outputs;
  });
  register(SOFTMAX_CROSS_ENTROPY, (b, inputs) => {
    const { logits, oneHot } = inputs as Inputs;
    const [n, c] = logits!.shape;
    const grad = b.makeOutput([n, c], 'float32');
    const loss = b.makeOutput([], 'float32');
    const biasGradient = b.makeOutput([c], 'float32');
    kernelExports(b).softmaxCrossEntropy(address(b, logits), address(b, oneHot), address(b, grad), address(b, loss), n, c);
    // The loss layer's bias gradient, Σ over rows of grad: summed in float64 and rounded once.
    const heap32 = new Float32Array(heap(b));
    const from = address(b, grad) >>> 2;
    const to = address(b, biasGradient) >>> 2;
    for (let j = 0; j < c; j++) {
      let sum = 0;
      for (let i = 0; i < n; i++) sum += heap32[from + i * c + j];
      heap32[to + j] = sum;
    }
    return [grad, loss, biasGradient];
  });
  register(SUM_SQUARES, (b, inputs) => {
    const { x } = inputs as Inputs;
    const out = b.makeOutput([], 'float32');
    kernelExports(b).sumSquares(address(b, x), address(b, out), sizeOf(x!.shape));
    return out;
  });
  // Every BN running average in one kernel (count pairs a{i}, other{i}).
  register(BLENDS, (b, inputs, attrs) => {
    const { count, alpha } = attrs;
    const outputs: tf.TensorInfo[] = [];
    for (let i = 0; i < count; i++) {
      const a = inputs[`a${i}`]!;
      const out = b.makeOutput(a.shape, 'float32');
      kernelExports(b).blend(address(b, a), address(b, inputs[`other${i}`]), address(b, out), sizeOf(a.shape), alpha);
      outputs.push(out);
    }
    return outputs;
  });
  // g·Wᵀ for a product below the threading threshold, in one kernel: gᵀ into scratch, then the
  // dense kernel's W·gᵀ (the sums of denseInputGradient's other path, bit for bit), transposed out.
  register(DENSE_INPUT_GRADIENT, (b, inputs) => {
    const { g, w } = inputs as { g: tf.TensorInfo; w: tf.TensorInfo };
    const [m, k] = g.shape;
    const rows = w.shape[0];
    const out = b.makeOutput([m, rows], 'float32');
    // g·Wᵀ straight into out, Wᵀ packed from W: 1.4–2× faster than (W·gᵀ)ᵀ with its two
    // transposes (35–52 µs at 100 × 30 · 30 × 50, .scratch measurement of 2026-12-01). Each entry
    // is the same products summed in the same order as by (W·gᵀ)ᵀ; so are its bits whenever both
    // take the kernel's same path: its 8-column SIMD path (madd) or its scalar path (mul, add), by
    // the output's width (rows here, m there).
    if ((m >= 8) === (rows >= 8)) {
      const kernels = kernelExports(b);
      const packed = packedFloats(k, rows);
      withScratch(b, packed + kernels.forwardTileFloats(), (scratch) => {
        packTransposedInHeap(b, address(b, w), scratch, rows, k);
        kernels.denseForwardPacked(address(b, g), scratch, 0, address(b, out), scratch + 4 * packed, m, k, rows);
      });
      return out;
    }
    withScratch(b, k * m + rows * m, (scratch) => {
      const product = scratch + 4 * k * m;
      transposeInHeap(b, address(b, g), scratch, m, k);
      denseForwardInHeap(b, address(b, w), scratch, 0, product, rows, k, m);
      transposeInHeap(b, product, address(b, out), rows, m);
    });
    return out;
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
  // On several threads our kernel beats single-threaded XNNPACK even with W packed.
  const threaded = variant !== null && willThread(x.shape[0] * x.shape[1] * w.shape[1]);
  if (variant === 'relaxed-simd' || (variant === 'simd128' && (!weightsReused || threaded))) return tf.engine().runKernel(DENSE_FORWARD, { x, w, bias: b }) as tf.Tensor2D;
  return tf.add(tf.matMul(x, w), b);
}

/**
 * x·W + b for rows given as a plain array, when this product runs on the kernel threads: the rows
 * are copied once, straight into the threads' memory (no tfjs tensor of x), or read where they are
 * when the array is a createBatchBuffer one. null otherwise (the
 * caller makes a tensor of x and calls denseScores). For inference over large sets, and for a
 * train step's first layer, whose weight step then finds the same rows there by the RowsRef's tag
 * (threadedMomentumStepOfRows).
 */
export function threadedScoresOfRows(x: Float32Array | RowsRef, rows: number, w: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor2D | null {
  const [k, n] = w.shape;
  const threads = activePool(rows * k * n);
  if (!threads) return null;
  const backend = tf.backend() as unknown as WasmBackendInternals;
  const out = backend.makeOutput([rows, n], 'float32');
  if (tryThreaded(() => threads.forward(heap(backend), x, rawRef(backend, w), ref(backend, b), address(backend, out), rows, k, n)))
    return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D;
  backend.disposeData(out.dataId, true);
  return null;
}

/**
 * denseMomentumStep for x given as rows (see threadedScoresOfRows) when it runs on the kernel
 * threads, which copy the rows only if the forward product did not leave them there under the
 * same tag. null otherwise: the caller makes a tensor of x and calls denseMomentumStep.
 */
export function threadedMomentumStepOfRows(
  x: RowsRef, g: tf.Tensor2D, w: tf.Tensor2D, v: tf.Tensor2D, settings: { lambda: number; learningRate: number; momentum: number },
): { w: tf.Tensor2D; v: tf.Tensor2D } | null {
  const [m, n] = g.shape;
  const k = w.shape[0];
  const threads = activePool(m * k * n);
  if (!threads) return null;
  const backend = tf.backend() as unknown as WasmBackendInternals;
  const [outW, outV] = [backend.makeOutput([k, n], 'float32'), backend.makeOutput([k, n], 'float32')];
  const { lambda, learningRate, momentum } = settings;
  hookDeferredCopies(backend); // Note [Deferred copies of the weight step's outputs]
  const done = tryThreaded(() =>
    threads.weightStep(
      heap(backend), x, ref(backend, g), rawRef(backend, w), rawRef(backend, v), ref(backend, outW), ref(backend, outV), m, k, n, 2 * lambda, learningRate, momentum,
      () => heap(backend),
    ),
  );
  if (!done) {
    for (const out of [outW, outV]) backend.disposeData(out.dataId, true);
    return null;
  }
  const [nextW, nextV] = [outW, outV].map((out) => tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D);
  return { w: nextW, v: nextV };
}

/** The kernel threads for a product of `work` multiply-adds on the active build, or null. */
function activePool(work: number): DenseThreads | null {
  const variant = activeVariant();
  return variant && work > 0 ? threadPool(variant, work) : null;
}

/**
 * g·Wᵀ, the gradient with respect to a dense layer's input. With our kernels it is computed as
 * (W·gᵀ)ᵀ by the dense kernel (threaded like x·W): no transpose of
 * W (2,000 × 1,000 floats in the sweep's widest layer) and no single-threaded matMul. Each entry
 * is one sum over W's row in order, whatever the thread count. Products below the threading
 * threshold (every one of the report's networks but the first layer's) run as one kernel, which
 * saves two tfjs transposes and their dispatch; the choice depends on the size only, and both
 * give the same bits.
 */
export function denseInputGradient(g: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  if (!activeVariant()) return tf.matMul(g, tf.transpose(w));
  if (g.shape[0] * g.shape[1] * w.shape[0] < minThreadedWork) return tf.engine().runKernel(DENSE_INPUT_GRADIENT, { g, w }) as tf.Tensor2D;
  return tf.transpose(tf.engine().runKernel(DENSE_FORWARD, { x: w, w: tf.transpose(g) }) as tf.Tensor2D);
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
  const next = momentumStep(w, v, denseWeightGradient(x, g, w, lambda), learningRate, momentum);
  return { w: next.theta, v: next.v };
}

/** What training-mode batch norm + ReLU computes for one layer (see batchNormReluForward). */
export interface BatchNormReluTensors {
  readonly mean: tf.Tensor1D;
  readonly variance: tf.Tensor1D;
  readonly invStd: tf.Tensor1D;
  readonly normalized: tf.Tensor2D;
  readonly pre: tf.Tensor2D;
  readonly relu: tf.Tensor2D;
}

/**
 * Training-mode BN then ReLU of scores s in one kernel: batch mean and biased variance (two
 * passes), invStd = 1/sqrt(σ² + ε), ŝ, pre = γŝ + β, relu(pre). null when the kernels are not
 * active (the caller runs tfjs ops).
 */
export function batchNormReluForward(s: tf.Tensor2D, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null, eps: number): BatchNormReluTensors | null {
  if (!activeVariant()) return null;
  const inputs: tf.NamedTensorMap = { s };
  if (gamma) inputs.gamma = gamma;
  if (beta) inputs.beta = beta;
  const [mean, variance, invStd, normalized, pre, relu] = tf.engine().runKernel(BN_RELU_FORWARD, inputs, { eps }) as tf.Tensor[];
  return {
    mean: mean as tf.Tensor1D, variance: variance as tf.Tensor1D, invStd: invStd as tf.Tensor1D,
    normalized: normalized as tf.Tensor2D, pre: pre as tf.Tensor2D, relu: relu as tf.Tensor2D,
  };
}

/**
 * Inference-mode BN + ReLU in one kernel: relu(γ·((s − mean)·invStd) + β) with the running mean
 * and variance, invStd = 1/sqrt(variance + eps), the same bits as the op-by-op inference forward
 * (forwardTrace). null when the kernels are not active.
 */
export function batchNormReluInference(
  s: tf.Tensor2D, mean: tf.Tensor1D, variance: tf.Tensor1D, eps: number, gamma: tf.Tensor1D | null, beta: tf.Tensor1D | null,
): tf.Tensor2D | null {
  if (!activeVariant()) return null;
  // invStd by the ops forwardTrace uses (d entries): the kernel then matches it bit for bit.
  const invStd = tf.tidy(() => tf.rsqrt(tf.add(variance, eps)));
  const inputs: tf.NamedTensorMap = { s, mean, invStd };
  if (gamma) inputs.gamma = gamma;
  if (beta) inputs.beta = beta;
  try {
    return tf.engine().runKernel(BN_RELU_INFERENCE, inputs, {}) as tf.Tensor2D;
  } finally {
    invStd.dispose();
  }
}

/**
 * Backward through ReLU and training-mode BN in one kernel, from g = ∂J/∂relu: ∂J/∂s, ∂J/∂γ and
 * ∂J/∂β (Note [BN backward through batch statistics], @bnmlp/reference batch-norm.ts). null when
 * the kernels are not active.
 */
export function batchNormReluBackward(
  g: tf.Tensor2D, pre: tf.Tensor2D, normalized: tf.Tensor2D, invStd: tf.Tensor1D, gamma: tf.Tensor1D | null,
): { gS: tf.Tensor2D; dGamma: tf.Tensor1D; dBeta: tf.Tensor1D } | null {
  if (!activeVariant()) return null;
  const inputs: tf.NamedTensorMap = { g, pre, normalized, invStd };
  if (gamma) inputs.gamma = gamma;
  const [gS, dGamma, dBeta] = tf.engine().runKernel(BN_RELU_BACKWARD, inputs, {}) as tf.Tensor[];
  return { gS: gS as tf.Tensor2D, dGamma: dGamma as tf.Tensor1D, dBeta: dBeta as tf.Tensor1D };
}

/** One parameter's momentum step: θ, its velocity v, and its gradient g (null: a zero gradient). */
export interface MomentumTarget<T extends tf.Tensor> {
  readonly theta: T;
  readonly v: T;
  readonly g: T | null;
}

/** v' = ρ·v + η·g and θ' = θ − v' for each target (one kernel for all of them), as new tensors. */
export function momentumSteps<T extends tf.Tensor>(targets: readonly MomentumTarget<T>[], learningRate: number, momentum: number): Array<{ theta: T; v: T }> {
  if (targets.length > 0 && activeVariant()) {
    const inputs: tf.NamedTensorMap = {};
    targets.forEach(({ theta, v, g }, i) => {
      inputs[`theta${i}`] = theta;
      inputs[`v${i}`] = v;
      if (g) inputs[`g${i}`] = g;
    });
    const outputs = tf.engine().runKernel(MOMENTUM_STEPS, inputs, { count: targets.length, learningRate, momentum }) as T[];
    return targets.map((_, i) => ({ theta: outputs[2 * i], v: outputs[2 * i + 1] }));
  }
  return targets.map(({ theta, v, g }) => {
    const nextV = (g ? tf.add(tf.mul(v, momentum), tf.mul(g, learningRate)) : tf.mul(v, momentum)) as T;
    return { theta: tf.sub(theta, nextV) as T, v: nextV };
  });
}

/** momentumSteps for one parameter. */
export function momentumStep<T extends tf.Tensor>(theta: T, v: T, g: T | null, learningRate: number, momentum: number): { theta: T; v: T } {
  return momentumSteps([{ theta, v, g }], learningRate, momentum)[0];
}

/**
 * ∂(mean cross-entropy)/∂logits = (softmax − Y)/n, the mean cross-entropy itself, and the loss
 * layer's bias gradient (the column sums of the first), in one kernel (float64 log-sum-exp and
 * sums inside), or null when the kernels are not active (the caller runs tfjs ops).
 */
export function softmaxCrossEntropy(logits: tf.Tensor2D, oneHot: tf.Tensor2D): { gradient: tf.Tensor2D; loss: tf.Scalar; biasGradient: tf.Tensor1D } | null {
  if (!activeVariant()) return null;
  const [gradient, loss, biasGradient] = tf.engine().runKernel(SOFTMAX_CROSS_ENTROPY, { logits, oneHot }, {}) as tf.Tensor[];
  return { gradient: gradient as tf.Tensor2D, loss: loss as tf.Scalar, biasGradient: biasGradient as tf.Tensor1D };
}

/**
 * Σ w² as a float32 scalar. On the kernel path the sum runs in float64 and is rounded once (tfjs's
 * float32 sum drifts by ~3e-5 relative over the 153,600 weights of the first layer).
 */
export function sumOfSquares(w: tf.Tensor): tf.Scalar {
  if (activeVariant()) return tf.engine().runKernel(SUM_SQUARES, { x: w }, {}) as tf.Scalar;
  return tf.sum(tf.square(w));
}

/** α·a + (1 − α)·b for each pair (the BN running averages; one kernel for all), as new tensors. */
export function blends<T extends tf.Tensor>(pairs: ReadonlyArray<readonly [T, T]>, alpha: number): T[] {
  if (pairs.length > 0 && activeVariant()) {
    const inputs: tf.NamedTensorMap = {};
    pairs.forEach(([a, other], i) => {
      inputs[`a${i}`] = a;
      inputs[`other${i}`] = other;
    });
    return tf.engine().runKernel(BLENDS, inputs, { count: pairs.length, alpha }) as T[];
  }
  return pairs.map(([a, other]) => tf.add(tf.mul(a, alpha), tf.mul(other, 1 - alpha)) as T);
}
