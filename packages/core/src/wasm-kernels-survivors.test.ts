import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { initBackend } from './backend.js';
import { exactScores, smallIntegerSource } from './test-support/exact-products.js';
import { KernelInstances, type Kernels } from './test-support/fresh-kernels.js';
import { withWasmModule } from './test-support/wasm-module-swap.js';

// Fixed cases for mutants of wasm-kernels.ts (configureKernelThreads, threadsFor, willThread,
// threadPool, activeVariant, instanceFor, tryThreaded, withScratch) and of train-step.ts that a
// StrykerJS run left alive (docs/mutation.md): each test names the mutants it kills as
// file:line:col. The module state of wasm-kernels.ts (the choice, the pool, the thread count, the
// refused tfjs modules) lives in the module, so each test imports a fresh instance, with its
// kernels registered in place of the last one's, as wasm-kernels-threads.test.ts does. Operands are
// small integers, so every product is exact in float32 whatever runs it; what is checked beyond the
// values is which kernels ran (tf.profile), on how many threads (threadedProductCount), the status,
// and the wasm backend's data ids.

const instances = new KernelInstances();

/** A fresh instance of wasm-kernels.ts (no choice, no pool, no failures, no thread count yet). */
const freshKernels = () => instances.fresh();

// x is M × K, W is K × N: on two threads each thread has rows of x·W.
const [M, K, N] = [16, 40, 8];

/** Small integers in [−3, 3], a new seed each call. */
const smallInts = smallIntegerSource();

/** x·W + b in float64 (exact for small integers). */
function expectedScores(x: Float32Array, w: Float32Array, b: Float32Array): number[] {
  return exactScores(x, w, b, M, K, N);
}

/** x·W + b of new operands through denseScores (W not reused: always our kernel), checked against the exact values. */
function checkScores(k: Kernels): void {
  const [x, w, b] = [smallInts(M * K), smallInts(K * N), smallInts(N)];
  const scores = tf.tidy(() => Array.from(k.denseScores(tf.tensor2d(x, [M, K]), tf.tensor2d(w, [K, N]), tf.tensor1d(b)).dataSync()));
  expect(scores).toEqual(expectedScores(x, w, b));
}

/** denseScores(x, W, b, weightsReused) of new operands: the kernels that ran, and whether the values are exact. */
async function profiledScores(k: Kernels, weightsReused: boolean): Promise<{ kernels: string[]; values: number[]; expected: number[] }> {
  const [x, w, b] = [smallInts(M * K), smallInts(K * N), smallInts(N)];
  let values: number[] = [];
  const profile = await tf.profile(() =>
    tf.tidy(() => {
      values = Array.from(k.denseScores(tf.tensor2d(x, [M, K]), tf.tensor2d(w, [K, N]), tf.tensor1d(b), weightsReused).dataSync());
    }),
  );
  return { kernels: profile.kernels.map((kernel) => kernel.name).filter((name) => !['MakeTensor', 'Reshape'].includes(name)), values, expected: expectedScores(x, w, b) };
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

afterEach(async () => {
  instances.current?.shutdownKernelThreads();
  vi.unstubAllEnvs();
  vi.unstubAllGlobals();
  await initBackend('wasm');
});

afterAll(() => {
  instances.restore();
});

describe('configureKernelThreads refuses what it cannot use, and says what it expected', () => {
  // Kills wasm-kernels.ts:211:48, 213:56, 216:57 (StringLiteral: the expectation emptied), 209:14
  // (StringLiteral: no operation named), 212:42 (true, `||`: a fractional minWork accepted).
  test.each([
    [0, {}, "configureKernelThreads: argument 'threads' must be 'auto' or an integer in [1, 8], got 0"],
    [2, { minWork: -1 }, "configureKernelThreads: argument 'options.minWork' must be an integer >= 0, got -1"],
    [2, { minWork: 1.5 }, "configureKernelThreads: argument 'options.minWork' must be an integer >= 0, got 1.5"],
    [2, { adaptive: 1 }, "configureKernelThreads: argument 'options.adaptive' must be a boolean, got 1"],
  ])('threads %j with options %j', async (threads, options, message) => {
    // Arrange
    const k = await freshKernels();

    // Act / Assert
    expect(() => k.configureKernelThreads(threads, options as { minWork?: number; adaptive?: boolean })).toThrow(message);
  });
});

describe('configureKernelThreads settings', () => {
  // Kills wasm-kernels.ts:210:76 (threads < MAX_KERNEL_THREADS).
  test('8 threads (MAX_KERNEL_THREADS) are accepted', async () => {
    // Arrange: with the kernels off no pool starts; the count shows once a build runs.
    const k = await freshKernels();
    k.configureWasmKernels('off');

    // Act
    k.configureKernelThreads(8);

    // Assert
    expect(k.configureWasmKernels('simd128')).toMatchObject({ variant: 'simd128', threads: 8, threadsReason: null });
  });

  // Kills wasm-kernels.ts:217:7 (ConditionalExpression true: minWork reset to undefined, every product threaded).
  test('a call without minWork keeps the minWork set before', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: M * K * N + 1, adaptive: false });

    // Act
    k.configureKernelThreads(2);
    checkScores(k);

    // Assert
    expect(k.threadedProductCount()).toBe(0);
  });

  // Kills wasm-kernels.ts:252:7 (ConditionalExpression false: the failure of the threads is reported although one thread was asked for).
  test('one thread asked for after the threads could not start: 1 thread, and no reason (none fewer than asked)', async () => {
    // Arrange
    vi.stubGlobal('SharedArrayBuffer', undefined);
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    expect(k.configureKernelThreads(2)).toMatchObject({ threads: 1, threadsReason: 'SharedArrayBuffer is unavailable' });

    // Act
    const status = k.configureKernelThreads(1);

    // Assert
    expect(status).toMatchObject({ variant: 'simd128', threads: 1, threadsReason: null });
  });
});

describe('configureKernelThreads and the running pool', () => {
  // Kills wasm-kernels.ts:219:7 (true, false), 219:15 (true, ===): the pool is replaced exactly
  // when the thread count changes (threadedProductCount counts the current pool's products).
  test('the same count keeps the pool (and its product count); another count starts a new one', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    checkScores(k);

    // Act / Assert
    expect(k.configureKernelThreads(2, { minWork: 0 })).toMatchObject({ threads: 2, threadsReason: null });
    expect(k.threadedProductCount()).toBe(1);
    expect(k.configureKernelThreads(3)).toMatchObject({ threads: 3, threadsReason: null });
    expect(k.threadedProductCount()).toBe(0);
    checkScores(k);
    expect(k.threadedProductCount()).toBe(1);
  });

  // Kills wasm-kernels.ts:223:7 (ConditionalExpression true: with no build running it tries to
  // start threads for a build named null, shutting the pool down on the way).
  test('with the kernels off it leaves the pool alone', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    checkScores(k);
    k.configureWasmKernels('off');

    // Act
    const status = k.configureKernelThreads(2);

    // Assert
    expect(status).toMatchObject({ variant: null, threads: 1, threadsReason: 'no kernel build runs' });
    expect(k.threadedProductCount()).toBe(1);
  });

  // Kills wasm-kernels.ts:220:7 (ConditionalExpression false: the running pool keeps its old
  // setting). Each product is judged lost (as the config suite does it: own part 0 ms, wait 1 ms),
  // so an adaptive pool runs 4 products threaded, then backs off; x has 8 rows, 4 for each thread.
  test.each([
    [true, false, 12],
    [false, true, 4],
  ])('adaptive %j, then adaptive %j on the running pool: %i of 12 lost products threaded', async (first, then, threaded) => {
    // Arrange
    const k = await freshKernels();
    const { DenseThreads } = await import('./dense-threads.js');
    const prototype = DenseThreads.prototype as unknown as { judge(ownMs: number, waitMs: number): void };
    const judge = prototype.judge;
    prototype.judge = function (this: unknown) {
      judge.call(this, 0, 1);
    };
    k.configureWasmKernels('simd128');
    const x = tf.ones([8, 64]) as tf.Tensor2D;
    const w = tf.ones([64, 64]) as tf.Tensor2D;
    const b = tf.zeros([64]) as tf.Tensor1D;
    try {
      k.configureKernelThreads(2, { minWork: 0, adaptive: first });

      // Act
      k.configureKernelThreads(2, { adaptive: then });
      for (let i = 0; i < 12; i++) tf.dispose(k.denseScores(x, w, b));

      // Assert
      expect(k.threadedProductCount()).toBe(threaded);
    } finally {
      prototype.judge = judge;
      tf.dispose([x, w, b]);
    }
  });
});

describe('threadedScoresOfRows', () => {
  // Kills wasm-kernels.ts:344:12 (BooleanLiteral false: the product runs on the threads, then is
  // thrown away as if they had failed).
  test('on a healthy pool it gives x·W + b computed on the threads', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: 0, adaptive: false });
    const [x, w, b] = [smallInts(M * K), smallInts(K * N), smallInts(N)];
    const wT = tf.tensor2d(w, [K, N]);
    const bT = tf.tensor1d(b);

    // Act
    const scores = k.threadedScoresOfRows(x, M, wT, bT);

    // Assert
    expect(scores).not.toBeNull();
    expect(scores!.shape).toEqual([M, N]);
    expect(Array.from(scores!.dataSync())).toEqual(expectedScores(x, w, b));
    expect(k.threadedProductCount()).toBe(1);
    tf.dispose([scores!, wT, bT]);
  });
});

describe('scratch buffers', () => {
  // Kills wasm-kernels.ts:356:13 (BlockStatement {}: the scratch buffer is never freed; tfjs's
  // memory() does not see it, the backend's data ids do).
  test('the kernels that use one leave no data behind in the wasm backend', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(1);
    const s = tf.tensor2d(smallInts(8 * 6), [8, 6]);
    const gamma = tf.ones([6]) as tf.Tensor1D;
    const beta = tf.zeros([6]) as tf.Tensor1D;
    const [x, g, w] = [tf.tensor2d(smallInts(8 * 5), [8, 5]), tf.tensor2d(smallInts(8 * 6), [8, 6]), tf.tensor2d(smallInts(5 * 6), [5, 6])];
    const backend = tf.backend();
    const before = backend.numDataIds();

    // Act: BN + ReLU forward and backward, g·Wᵀ (one kernel), the weight gradient (unthreaded).
    tf.tidy(() => {
      const bn = k.batchNormReluForward(s, gamma, beta, 1e-5)!;
      k.batchNormReluBackward(g, bn.pre, bn.normalized, bn.invStd, gamma);
      k.denseInputGradient(g, w);
      k.denseWeightGradient(x, g, w, 0.5);
    });

    // Assert
    expect(backend.numDataIds()).toBe(before);
    tf.dispose([s, gamma, beta, x, g, w]);
  });
});

describe('x·W + b with W reused (inference) on the simd128 build: our kernel when it runs on threads, else tfjs matMul (XNNPACK keeps W packed)', () => {
  // Kills wasm-kernels.ts:259:44 (BlockStatement), 261:10 (false, !variant), 261:11 (variant),
  // 261:23 (wantedThreads() <= 1), 261:46 (work > minThreadedWork), 261:73 (threadFailures.has).
  test('a product of exactly minWork multiply-adds on two threads runs our dense kernel, threaded', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: M * K * N, adaptive: false });

    // Act
    const run = await profiledScores(k, true);

    // Assert
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BnmlpDenseForward']);
    expect(k.threadedProductCount()).toBe(1);
  });

  // Kills wasm-kernels.ts:261:10 (true, `||`), 261:23 (true, >= 1, <= 1).
  test('on one thread it runs tfjs matMul', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(1, { minWork: 0 });

    // Act
    const run = await profiledScores(k, true);

    // Assert
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BatchMatMul', 'Add']);
  });

  // Kills wasm-kernels.ts:261:10 (true), 261:46 (>= kept: a product one below minWork).
  test('a product below minWork runs tfjs matMul', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(2, { minWork: M * K * N + 1, adaptive: false });

    // Act
    const run = await profiledScores(k, true);

    // Assert
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BatchMatMul', 'Add']);
    expect(k.threadedProductCount()).toBe(0);
  });

  // Kills wasm-kernels.ts:261:10 (true), 261:73 (threadFailures.has: threads "run" where they failed).
  test('when the threads could not start for the build, it runs tfjs matMul', async () => {
    // Arrange
    vi.stubGlobal('SharedArrayBuffer', undefined);
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    expect(k.configureKernelThreads(2, { minWork: 0, adaptive: false })).toMatchObject({ threads: 1, threadsReason: 'SharedArrayBuffer is unavailable' });

    // Act
    const run = await profiledScores(k, true);

    // Assert
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BatchMatMul', 'Add']);
  });

  // Kills wasm-kernels.ts:267:7 (LogicalOperator `(wanted === 1 || work < minThreadedWork) &&
  // threadFailures.has(variant)`, `wanted === 1 && work < minThreadedWork`: a pool of one thread).
  test('W not reused, one thread: our kernel, unthreaded', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    k.configureKernelThreads(1, { minWork: 0 });

    // Act
    const run = await profiledScores(k, false);

    // Assert
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BnmlpDenseForward']);
    expect(k.threadedProductCount()).toBe(0);
  });
});

describe('on another backend', () => {
  // Kills wasm-kernels.ts:294:7 (ConditionalExpression false: activeVariant on cpu chooses a build,
  // registering the kernels, before it finds no wasm memory; the default choice is then fixed early).
  test('the kernel functions run tfjs ops without choosing a build: BNMLP_WASM_KERNELS is read when the status is first asked for, and no kernel is registered', async () => {
    // Arrange
    const k = await freshKernels();
    await initBackend('cpu');
    const [x, w, b] = [smallInts(M * K), smallInts(K * N), smallInts(N)];

    // Act
    const scores = tf.tidy(() => Array.from(k.denseScores(tf.tensor2d(x, [M, K]), tf.tensor2d(w, [K, N]), tf.tensor1d(b)).dataSync()));
    vi.stubEnv('BNMLP_WASM_KERNELS', 'off');
    const status = k.wasmKernelStatus();

    // Assert
    expect(scores).toEqual(expectedScores(x, w, b));
    expect(status).toMatchObject({ choice: 'off', variant: null });
    expect(instances.registered()).toEqual([]);
  });
});

describe('activeVariant: the build the kernel functions run', () => {
  // Kills wasm-kernels.ts:295:20 (LogicalOperator `status && wasmKernelStatus()`: null.variant).
  test("a fresh instance's first kernel call on wasm makes the default choice itself ('auto') and runs our kernel", async () => {
    // Arrange
    const k = await freshKernels();

    // Act
    const run = await profiledScores(k, false);

    // Assert
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BnmlpDenseForward']);
    expect(k.wasmKernelStatus()).toMatchObject({ choice: 'auto', reason: null });
  });

  // Kills wasm-kernels.ts:296:7 (ConditionalExpression false: with the kernels off, activeVariant
  // instantiates a build named null, fails, and marks the backend unusable for good).
  test('kernel calls while the kernels are off do not keep them off: a build chosen afterwards runs', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('off');
    const whileOff = await profiledScores(k, false);

    // Act
    const status = k.configureWasmKernels('simd128');
    const run = await profiledScores(k, false);

    // Assert
    expect(whileOff.values).toEqual(whileOff.expected);
    expect(whileOff.kernels).not.toContain('BnmlpDenseForward');
    expect(status).toMatchObject({ variant: 'simd128', reason: null });
    expect(run.values).toEqual(run.expected);
    expect(run.kernels).toEqual(['BnmlpDenseForward']);
  });

  // Kills wasm-kernels.ts:298:7 (ConditionalExpression false: the refusal is not remembered, and
  // the kernels run on the module again while the status still names the refusal). Swapping the
  // module's exports stands in for a module the kernels cannot use (as in wasm-kernels-threads.test.ts);
  // a real tfjs module never changes, so there the mutant only retries the failing instantiation.
  test('a tfjs wasm module once refused stays refused: the kernel functions keep declining, as the status says', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    const logits = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const oneHot = tf.tensor2d([1, 0, 0, 1], [2, 2]);
    withWasmModule({ asm: {} }, () => expect(k.softmaxCrossEntropy(logits, oneHot)).toBeNull());

    // Act
    const result = k.softmaxCrossEntropy(logits, oneHot);

    // Assert
    expect(result).toBeNull();
    expect(k.wasmKernelStatus()).toMatchObject({ variant: null, reason: 'bnmlp wasm kernels: the tfjs wasm module exports no memory' });
    [logits, oneHot].forEach((t) => t.dispose());
  });

  // Kills wasm-kernels.ts:314:18 (OptionalChaining `backend.wasm.asm.memory`: a TypeError instead
  // of the reason). Newer Emscripten builds name the exports wasmExports, with no asm at all.
  test('a tfjs wasm module with no asm exports is refused with the reason that it exports no memory', async () => {
    // Arrange
    const k = await freshKernels();
    k.configureWasmKernels('simd128');
    const logits = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const oneHot = tf.tensor2d([1, 0, 0, 1], [2, 2]);

    // Act
    const [result, status] = withWasmModule({}, () => [k.softmaxCrossEntropy(logits, oneHot), k.wasmKernelStatus()] as const);

    // Assert
    expect(result).toBeNull();
    expect(status).toMatchObject({ choice: 'simd128', variant: null, reason: 'bnmlp wasm kernels: the tfjs wasm module exports no memory' });
    [logits, oneHot].forEach((t) => t.dispose());
  });
});

describe('trainStep: a hand-built half-BN layer', () => {
  // train-step.ts:106:9 (the `!runningMean || !runningVar` guard of the running averages) is
  // unreachable since validateModel: such a model is refused at the entry point, before a step.
  test('a hidden layer with a running mean but no running variance is refused, naming it, and nothing changes', async () => {
    // Arrange: modelFromValues refuses such a layer, but CoreModel is a plain interface a caller can build.
    const k = await freshKernels();
    const { createModel, disposeModel, modelValues } = await import('./model.js');
    const { createMomentumState, disposeMomentumState, trainStep } = await import('./train-step.js');
    const { CoreArgumentError } = await import('./errors.js');
    k.configureWasmKernels('simd128');
    const full = createModel({ inputDim: 4, hiddenDims: [5, 6], classes: 3 }, { seed: 7 });
    const values = modelValues(full);
    const model = { config: full.config, layers: [{ ...full.layers[0], runningVar: null }, ...full.layers.slice(1)] };
    const state = createMomentumState(full);
    const x = Float32Array.from({ length: 8 * 4 }, (_, i) => (i % 7) - 3);
    const labels = Int32Array.from({ length: 8 }, (_, i) => i % 3);

    try {
      // Act
      const error = (() => {
        try {
          trainStep(model, state, { data: x, rows: 8, cols: 4 }, labels, { lambda: 0, learningRate: 0.1, momentum: 0.9 });
        } catch (e) {
          return e;
        }
        return null;
      })() as InstanceType<typeof CoreArgumentError>;

      // Assert
      expect(error).toBeInstanceOf(CoreArgumentError);
      expect([error.op, error.argument, error.expected, error.actual]).toEqual(['trainStep', 'model.layers[0].runningVar', 'a float32 tensor [5]', 'null']);
      expect(modelValues(full)).toEqual(values);
    } finally {
      disposeModel(full);
      disposeMomentumState(state);
    }
  });
});
