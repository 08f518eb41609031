import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker, WorkerOptions } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { initBackend } from './backend.js';
import { exactScores, smallIntegerSource } from './test-support/exact-products.js';
import { KernelInstances, type Kernels } from './test-support/fresh-kernels.js';
import { withWasmModule } from './test-support/wasm-module-swap.js';

// The kernel threads as wasm-kernels.ts runs them (threadPool, threadsFor, tryThreaded): the
// thread count from env BNMLP_THREADS and 'auto', pools that cannot start (no SharedArrayBuffer,
// no worker script, no '-shared' build), pools that break (a worker exits, a part traps), a switch
// of build, errors that are not the pool's, and the fallbacks around instanceFor. Its state (the
// pool, the failures per build, the thread count read from env once) lives in the module, so each
// test imports a fresh instance. Seams: node:os's availableParallelism (a fixed count), node:fs's
// existsSync (can hide the worker script), node:worker_threads's Worker (records the workers and
// can run another script); everything else is the real code. Operands are small integers, so
// every product is exact in float32 and the expected values are plain JavaScript sums.

const hooks = vi.hoisted(() => ({
  /** What availableParallelism() returns. */
  parallelism: 5,
  /** Paths (file URLs) existsSync reports missing. */
  missing: new Set<string>(),
  /** A script every new Worker runs instead of the one asked for, or null. */
  workerScript: null as URL | null,
  /** The workers started, in order. */
  workers: [] as Worker[],
}));

vi.mock('node:os', async (importOriginal) => {
  const os = await importOriginal<typeof import('node:os')>();
  const availableParallelism = () => hooks.parallelism;
  return { ...os, default: { ...os, availableParallelism }, availableParallelism };
});

vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const existsSync = (path: import('node:fs').PathLike) => !hooks.missing.has(path instanceof URL ? path.href : String(path)) && fs.existsSync(path);
  return { ...fs, default: { ...fs, existsSync }, existsSync };
});

vi.mock('node:worker_threads', async (importOriginal) => {
  const threads = await importOriginal<typeof import('node:worker_threads')>();
  class RecordedWorker extends threads.Worker {
    constructor(script: string | URL, options?: WorkerOptions) {
      super(hooks.workerScript ?? script, options);
      hooks.workers.push(this);
    }
  }
  return { ...threads, default: { ...threads, Worker: RecordedWorker }, Worker: RecordedWorker };
});

const WORKER_URL = new URL('../worker/dense-worker.mjs', import.meta.url);
/** A worker that starts, then reports every part it is asked for as trapped (STATUS 1), until told to exit. */
const TRAPPING_WORKER = new URL(`data:text/javascript,${encodeURIComponent(`
  import { workerData } from 'node:worker_threads';
  const ctrl = new Int32Array(workerData.control);
  Atomics.store(ctrl, 4, 1);
  Atomics.notify(ctrl, 4);
  for (let seen = 0; ; ) {
    Atomics.wait(ctrl, 0, seen);
    seen = Atomics.load(ctrl, 0);
    if (ctrl[2] === 0) break;
    ctrl[3] = 1;
    Atomics.store(ctrl, 1, seen);
    Atomics.notify(ctrl, 1);
  }
`)}`);

const instances = new KernelInstances();
const tempDirs: string[] = [];

/** A fresh instance of wasm-kernels.ts (no pool, no failures, no thread count read yet), its kernels registered in place of the last one's. */
const freshKernels = () => instances.fresh();

/** A directory holding copies of the given builds (kernels-<name>.wasm) from where wasm-kernels.ts reads them. */
function kernelsDir(names: string[]): string {
  const from = process.env.BNMLP_WASM_KERNELS_DIR;
  const dir = mkdtempSync(join(tmpdir(), 'bnmlp-threads-test-'));
  tempDirs.push(dir);
  for (const name of names) copyFileSync(from ? join(from, `kernels-${name}.wasm`) : new URL(`../wasm/kernels-${name}.wasm`, import.meta.url), join(dir, `kernels-${name}.wasm`));
  return dir;
}

/** Small integers in [−3, 3], a new seed each call, so no two tests' outputs coincide. */
const smallInts = smallIntegerSource();

// m = 16 rows of x split [0, 4) and [4, 16) for x·W (n = 8), k = 40 rows of W split [0, 16) and
// [16, 40) for the weight step: on two threads the worker has a part of both products.
const [M, K, N] = [16, 40, 8];

/** x·W + b in float64 (exact for small integers). */
function expectedScores(x: Float32Array, w: Float32Array, b: Float32Array): number[] {
  return exactScores(x, w, b, M, K, N);
}

/** x·W + b through denseScores, checked against the exact values. */
function checkScores(k: Kernels): void {
  const [x, w, b] = [smallInts(M * K), smallInts(K * N), smallInts(N)];
  const scores = tf.tidy(() => k.denseScores(tf.tensor2d(x, [M, K]), tf.tensor2d(w, [K, N]), tf.tensor1d(b)).dataSync());
  expect(Array.from(scores)).toEqual(expectedScores(x, w, b));
}

/** The momentum step with η = 1, ρ = 1, λ = 0 through denseMomentumStep: v' = v + xᵀg, W' = W − v', checked exactly. */
function checkMomentumStep(k: Kernels): void {
  const [x, g, w, v] = [smallInts(M * K), smallInts(M * N), smallInts(K * N), smallInts(K * N)];
  const [nextW, nextV] = tf.tidy(() => {
    const step = k.denseMomentumStep(tf.tensor2d(x, [M, K]), tf.tensor2d(g, [M, N]), tf.tensor2d(w, [K, N]), tf.tensor2d(v, [K, N]), { lambda: 0, learningRate: 1, momentum: 1 });
    return [step.w.dataSync(), step.v.dataSync()];
  });
  const expectedV: number[] = [];
  for (let p = 0; p < K; p++)
    for (let j = 0; j < N; j++) {
      let sum = v[p * N + j];
      for (let i = 0; i < M; i++) sum += x[i * K + p] * g[i * N + j];
      expectedV.push(sum);
    }
  expect(Array.from(nextV)).toEqual(expectedV);
  expect(Array.from(nextW)).toEqual(expectedV.map((value, e) => w[e] - value));
}

/** Resolves once `worker` has exited (after its 'exit' listeners, the pool's among them, have run). */
function terminated(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    worker.once('exit', () => resolve());
    void worker.terminate();
  });
}

beforeAll(async () => {
  await initBackend('wasm');
  instances.save();
});

beforeEach(() => {
  // The thread count and kernel choice come from each test (not from this shell's environment).
  vi.stubEnv('BNMLP_THREADS', undefined);
  vi.stubEnv('BNMLP_WASM_KERNELS', undefined);
});

afterEach(() => {
  instances.current?.shutdownKernelThreads();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
  hooks.parallelism = 5;
  hooks.missing.clear();
  hooks.workerScript = null;
  hooks.workers.length = 0;
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

afterAll(() => {
  instances.restore();
});

describe('the thread count', () => {
  // Kills wasm-kernels.ts:193:45 (!== 'auto'), 194:49 (true, > 1, < 1), 194:64 (true, < MAX, > MAX).
  test.each([
    [undefined, 5, 5], ['auto', 5, 5], ['3', 5, 3], ['1', 5, 1], ['8', 5, 8], ['0', 5, 5], ['9', 5, 5], ['2.5', 5, 5], ['x', 5, 5], ['', 5, 5],
    [undefined, 20, 8], ['auto', 1, 1],
  ])('BNMLP_THREADS=%j with an available parallelism of %i: %i threads (an integer in [1, 8], else the parallelism, at most 8)', async (env, parallelism, expected) => {
    // Arrange
    vi.stubEnv('BNMLP_THREADS', env);
    hooks.parallelism = parallelism;
    const k = await freshKernels();

    // Act
    const status = k.wasmKernelStatus();

    // Assert
    expect(status.variant).not.toBeNull();
    expect(status).toMatchObject({ threads: expected, threadsReason: null });
  });

  // Kills wasm-kernels.ts:214:40 (Math.max).
  test("configureKernelThreads('auto') takes the available parallelism when it is below 8", async () => {
    // Arrange
    hooks.parallelism = 3;
    const k = await freshKernels();

    // Act
    const status = k.configureKernelThreads('auto');

    // Assert: a pool of 3 threads, the caller's and 2 workers.
    expect(status).toMatchObject({ threads: 3, threadsReason: null });
    expect(hooks.workers).toHaveLength(2);
  });
});

describe('a pool that cannot start: the status says 1 thread and why, and products run unthreaded with the same values', () => {
  // Kills wasm-kernels.ts:254:23, 275:69, 281:21, 282:66.
  test('without SharedArrayBuffer', async () => {
    // Arrange
    vi.stubGlobal('SharedArrayBuffer', undefined);
    const k = await freshKernels();
    k.configureWasmKernels('simd128');

    // Act
    const status = k.configureKernelThreads(2, { minWork: 0 });

    // Assert
    expect(status).toMatchObject({ variant: 'simd128', threads: 1, threadsReason: 'SharedArrayBuffer is unavailable' });
    checkScores(k);
    checkMomentumStep(k);
    expect(k.threadedProductCount()).toBe(0);
    expect(hooks.workers).toHaveLength(0);
    expect(k.wasmKernelStatus()).toMatchObject({ threads: 1, threadsReason: 'SharedArrayBuffer is unavailable' });
  });

  // Kills wasm-kernels.ts:276:52.
  test('without the worker script', async () => {
    // Arrange
    hooks.missing.add(WORKER_URL.href);
    const k = await freshKernels();
    k.configureWasmKernels('simd128');

    // Act
    const status = k.configureKernelThreads(2, { minWork: 0 });

    // Assert
    expect(status).toMatchObject({ variant: 'simd128', threads: 1, threadsReason: `the kernel thread script is missing (${WORKER_URL.pathname})` });
    checkScores(k);
    expect(k.threadedProductCount()).toBe(0);
    expect(hooks.workers).toHaveLength(0);
  });

  // Kills wasm-kernels.ts:278:55 (and 282:66 again: the reason is the first line of the error).
  test("without the build's '-shared' variant", async () => {
    // Arrange: a kernels directory holding the unthreaded builds only.
    const dir = kernelsDir(['simd128', 'relaxed-simd']);
    vi.stubEnv('BNMLP_WASM_KERNELS_DIR', dir);
    const k = await freshKernels();
    k.configureWasmKernels('simd128');

    // Act
    const status = k.configureKernelThreads(2, { minWork: 0 });

    // Assert
    expect(status).toMatchObject({ variant: 'simd128', threads: 1 });
    expect(status.threadsReason).toMatch(/^the simd128-shared build: ENOENT\b.*kernels-simd128-shared\.wasm'?$/);
    checkScores(k);
    checkMomentumStep(k);
    expect(k.threadedProductCount()).toBe(0);
    expect(hooks.workers).toHaveLength(0);
  });
});

describe('a pool that breaks', () => {
  // Kills wasm-kernels.ts:254:23, 268:67, 269:9 (false), 271:9 (false).
  test('a worker that exits between products: the status says so, the next products run unthreaded, and no new pool starts for that build', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    checkScores(k);
    expect(k.threadedProductCount()).toBe(1);
    expect(k.wasmKernelStatus()).toMatchObject({ threads: 2, threadsReason: null });

    // Act
    await terminated(hooks.workers[0]);

    // Assert
    expect(k.wasmKernelStatus()).toMatchObject({ threads: 1, threadsReason: 'a kernel thread exited (code 1)' });
    checkScores(k);
    checkMomentumStep(k);
    expect(k.threadedProductCount()).toBe(0);
    expect(hooks.workers).toHaveLength(1);
    expect(k.wasmKernelStatus()).toMatchObject({ threads: 1, threadsReason: 'a kernel thread exited (code 1)' });
  });

  // Kills wasm-kernels.ts:346:9 (true, ===), 346:35, 347:12.
  test.each(['x·W + b', 'the momentum step'])("%s: a part that traps on its thread (a DenseThreadsError) sends the product to the unthreaded kernel, with the same values", async (product) => {
    // Arrange
    hooks.workerScript = TRAPPING_WORKER;
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    expect(k.configureKernelThreads(2, { minWork: 0, adaptive: false })).toMatchObject({ threads: 2, threadsReason: null });

    // Act / Assert
    if (product === 'x·W + b') checkScores(k);
    else checkMomentumStep(k);
    expect(k.wasmKernelStatus()).toMatchObject({ threads: 1, threadsReason: 'a kernel thread trapped' });
  });

  // Kills wasm-kernels.ts:346:9 (true, ===), 346:35, 347:12.
  test('rows given as an array: a part that traps gives null (the caller then runs x·W itself), and the output made for it is freed', async () => {
    // Arrange
    hooks.workerScript = TRAPPING_WORKER;
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    const w = tf.tensor2d(smallInts(K * N), [K, N]);
    const b = tf.tensor1d(smallInts(N));
    const dataBefore = tf.backend().numDataIds();

    // Act
    const scores = k.threadedScoresOfRows(smallInts(M * K), M, w, b);

    // Assert
    expect(scores).toBeNull();
    expect(tf.backend().numDataIds()).toBe(dataBefore);
    expect(k.wasmKernelStatus()).toMatchObject({ threads: 1, threadsReason: 'a kernel thread trapped' });
    [w, b].forEach((t) => t.dispose());
  });

  // Kills wasm-kernels.ts:345:19, 346:9 (false).
  test('an error that is not the pool\'s (here the idle task\'s) propagates out of the product', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    let ran = 0;
    k.setKernelIdleTask(() => {
      ran++;
      throw new Error('the idle task failed');
    });

    // Act / Assert
    expect(() => checkScores(k)).toThrow('the idle task failed');
    expect(ran).toBe(1);
  });
});

describe('a switch of build', () => {
  // Kills wasm-kernels.ts:268:67, 269:9 (true), 271:9 (true).
  test("restarts the threads on the new build, and again on the old one (a healthy pool's build is not marked failed)", async () => {
    // Arrange
    const k = await freshKernels();
    expect(k.allowRelaxedSimd()).toBe(true);
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    checkScores(k);
    expect(k.threadedProductCount()).toBe(1);

    // Act / Assert: a new pool for relaxed-simd (its first product)…
    k.configureWasmKernels('relaxed-simd');
    checkScores(k);
    expect(k.threadedProductCount()).toBe(1);
    expect(hooks.workers).toHaveLength(2);
    // …and a new one for simd128 again (two products on it).
    k.configureWasmKernels('simd128');
    checkScores(k);
    checkMomentumStep(k);
    expect(k.threadedProductCount()).toBe(2);
    expect(hooks.workers).toHaveLength(3);
    expect(k.wasmKernelStatus()).toMatchObject({ variant: 'simd128', threads: 2, threadsReason: null });
  });
});

describe('the simd128 build as the default', () => {
  // Kills wasm-kernels.ts:389:51, 401:51.
  test('the dense kernels dispatched by name while the kernels are off run the simd128 build, threaded as configured', async () => {
    // Arrange: the kernels registered, then turned off.
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureWasmKernels('off');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    const [x, w, b, g] = [smallInts(M * K), smallInts(K * N), smallInts(N), smallInts(M * N)];

    // Act
    const scores = tf.tidy(() =>
      (tf.engine().runKernel('BnmlpDenseForward', { x: tf.tensor2d(x, [M, K]), w: tf.tensor2d(w, [K, N]), bias: tf.tensor1d(b) }) as tf.Tensor).dataSync(),
    );
    const afterForward = k.threadedProductCount();
    const gradient = tf.tidy(() =>
      (tf.engine().runKernel('BnmlpDenseWeightStep', { x: tf.tensor2d(x, [M, K]), g: tf.tensor2d(g, [M, N]), w: tf.tensor2d(w, [K, N]) }, { decay: 0, learningRate: 0, momentum: 0 }) as tf.Tensor).dataSync(),
    );

    // Assert
    expect(Array.from(scores)).toEqual(expectedScores(x, w, b));
    const expectedGradient: number[] = [];
    for (let p = 0; p < K; p++)
      for (let j = 0; j < N; j++) {
        let sum = 0;
        for (let i = 0; i < M; i++) sum += x[i * K + p] * g[i * N + j];
        expectedGradient.push(sum);
      }
    expect(Array.from(gradient)).toEqual(expectedGradient);
    expect(afterForward).toBe(1);
    expect(k.threadedProductCount()).toBe(2);
  });

  // Kills wasm-kernels.ts:310:50.
  test("kernelExports with the kernels off gives the simd128 build's kernels", async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    const backend = tf.backend() as unknown as import('./wasm-kernels.js').WasmBackendInternals;
    const simd128 = k.kernelExports(backend);

    // Act
    k.configureWasmKernels('off');

    // Assert
    expect(k.kernelExports(backend)).toBe(simd128);
  });

  // Kills wasm-kernels.ts:321:53.
  test('kernelExports when no build loads is an error naming the simd128 build and why', async () => {
    // Arrange: an empty kernels directory.
    vi.stubEnv('BNMLP_WASM_KERNELS_DIR', kernelsDir([]));
    const k = await freshKernels();
    expect(k.configureWasmKernels('auto')).toMatchObject({ variant: null });

    // Act / Assert
    expect(() => k.kernelExports(tf.backend() as unknown as import('./wasm-kernels.js').WasmBackendInternals)).toThrow(
      /^bnmlp wasm kernels: simd128 unavailable: ENOENT\b.*kernels-simd128\.wasm/,
    );
  });
});

describe('a tfjs wasm module the kernels cannot use', () => {
  // Kills wasm-kernels.ts:302:19, 315:67.
  test('one that exports no memory: the kernel functions decline, and the status names the reason', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    const logits = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const oneHot = tf.tensor2d([1, 0, 0, 1], [2, 2]);

    // Act: only our functions run while the module is swapped (tfjs ops would need its memory).
    const [result, status] = withWasmModule({ asm: {} }, () => [k.softmaxCrossEntropy(logits, oneHot), k.wasmKernelStatus()] as const);

    // Assert
    expect(result).toBeNull();
    expect(status).toEqual({
      choice: 'simd128', variant: null, reason: 'bnmlp wasm kernels: the tfjs wasm module exports no memory', threads: 1, threadsReason: 'no kernel build runs',
    });
    [logits, oneHot].forEach((t) => t.dispose());
  });
});
