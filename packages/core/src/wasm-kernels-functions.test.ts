import * as tf from '@tensorflow/tfjs-core';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { initBackend } from './backend.js';
import {
  batchNormReluBackward, batchNormReluForward, blends, configureKernelThreads, configureWasmKernels, denseInputGradient, denseMomentumStep, denseScores,
  denseWeightGradient, momentumSteps, shutdownKernelThreads, threadedProductCount, threadedScoresOfRows, type WasmBackendInternals,
} from './wasm-kernels.js';
import { exactScores, smallIntegerSource } from './test-support/exact-products.js';

// Fixed cases for mutants of the kernel registrations and the exported functions of
// wasm-kernels.ts (its lines 382–689) that survived a StrykerJS run (docs/mutation.md). Each test
// names the mutants it kills as wasm-kernels.ts:line:col. Most of them change only whether a
// product runs on the kernel threads, or which kernel runs it: the values are the same bits by
// design, so the tests watch threadedProductCount(), the kernels tfjs dispatched (tf.profile), or
// the buffers a kernel asks the backend for.
//
// Every test sets the build and the threads it needs (a fresh pool: no back-off carried over), so
// each stands alone. Operands are small integers: every product is exact in float32 whatever the
// summation order, and the expected values are plain JavaScript sums.

/** Small integers in [−3, 3], a new seed each call. */
const smallInts = smallIntegerSource();

// On two threads each thread has rows of both products: x·W splits m = 16 rows, the weight step k = 40.
const [M, K, N] = [16, 40, 8];

/** x·W + b in float64 (exact for small integers), m rows. */
function expectedScores(x: Float32Array, w: Float32Array, b: Float32Array, m: number): number[] {
  return exactScores(x, w, b, m, K, N);
}

/** xᵀ·g in float64 (exact for small integers). */
function expectedGradient(x: Float32Array, g: Float32Array): number[] {
  const out: number[] = [];
  for (let p = 0; p < K; p++)
    for (let j = 0; j < N; j++) {
      let sum = 0;
      for (let i = 0; i < M; i++) sum += x[i * K + p] * g[i * N + j];
      out.push(sum);
    }
  return out;
}

/** `threads` kernel threads on a new pool (nothing carried over from earlier products), never backing off. */
function freshThreads(threads: number, minWork: number): void {
  shutdownKernelThreads();
  configureKernelThreads(threads, { minWork, adaptive: false });
}

beforeAll(async () => {
  await initBackend('wasm');
});

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(() => {
  // The module's defaults again.
  shutdownKernelThreads();
  configureKernelThreads('auto', { minWork: 1 << 20, adaptive: true });
  configureWasmKernels('auto');
});

describe('x·W + b (BnmlpDenseForward, denseScores)', () => {
  // Kills wasm-kernels.ts:388:9 (false).
  test('of no rows is an empty result made without the threads, even when every product is worth threading', () => {
    // Arrange
    configureWasmKernels('simd128');
    freshThreads(2, 0);
    const [w, b] = [smallInts(K * N), smallInts(N)];

    // Act
    const empty = tf.tidy(() => {
      const scores = denseScores(tf.zeros([0, K]) as tf.Tensor2D, tf.tensor2d(w, [K, N]), tf.tensor1d(b));
      return { shape: scores.shape, values: Array.from(scores.dataSync()) };
    });
    const afterEmpty = threadedProductCount();
    const x = smallInts(K);
    const oneRow = tf.tidy(() => Array.from(denseScores(tf.tensor2d(x, [1, K]), tf.tensor2d(w, [K, N]), tf.tensor1d(b)).dataSync()));

    // Assert: no threaded product for the empty one; one row does run on the threads.
    expect(empty).toEqual({ shape: [0, N], values: [] });
    expect(afterEmpty).toBe(0);
    expect(oneRow).toEqual(expectedScores(x, w, b, 1));
    expect(threadedProductCount()).toBe(1);
  });
});

describe('x·W + b of rows given as an array (threadedScoresOfRows)', () => {
  // Kills wasm-kernels.ts:537:61 (rows * k / n, rows / k). (534:121, 537:19 false, 537:30 rows <= 0, 538:7 true and 541:7
  // false fail here too; wasm-kernels-threads.test.ts already kills them.)
  test('runs on the threads exactly when its rows·k·n multiply-adds reach minWork, else gives null (the caller runs x·W itself)', () => {
    // Arrange
    configureWasmKernels('simd128');
    const [x, w, b] = [smallInts(M * K), smallInts(K * N), smallInts(N)];
    const [wt, bt] = [tf.tensor2d(w, [K, N]), tf.tensor1d(b)];
    const run = () => {
      const scores = threadedScoresOfRows(x, M, wt, bt);
      const result = scores && { shape: scores.shape, values: Array.from(scores.dataSync()) };
      scores?.dispose();
      return { result, threaded: threadedProductCount() };
    };

    // Act
    freshThreads(2, M * K * N);
    const atThreshold = run();
    freshThreads(2, M * K * N + 1);
    const belowThreshold = run();

    // Assert
    expect(atThreshold).toEqual({ result: { shape: [M, N], values: expectedScores(x, w, b, M) }, threaded: 1 });
    expect(belowThreshold).toEqual({ result: null, threaded: 0 });
    [wt, bt].forEach((t) => t.dispose());
  });

  // Kills wasm-kernels.ts:537:19 (true, variant || rows > 0), 537:30 (true, rows >= 0).
  test('of no rows gives null without running the threads, even when every product is worth threading', () => {
    // Arrange
    configureWasmKernels('simd128');
    freshThreads(2, 0);
    const [wt, bt] = [tf.tensor2d(smallInts(K * N), [K, N]), tf.tensor1d(smallInts(N))];

    // Act
    const scores = threadedScoresOfRows(new Float32Array(0), 0, wt, bt);

    // Assert
    expect(scores).toBeNull();
    expect(threadedProductCount()).toBe(0);
    scores?.dispose();
    [wt, bt].forEach((t) => t.dispose());
  });
});

describe('the weight step (BnmlpDenseWeightStep: denseWeightGradient, denseMomentumStep)', () => {
  // Kills wasm-kernels.ts:401:62 (m * k / n, m / k).
  test('runs on the threads exactly when its m·k·n multiply-adds reach minWork', () => {
    // Arrange
    configureWasmKernels('simd128');
    const [x, g, w] = [smallInts(M * K), smallInts(M * N), smallInts(K * N)];
    const gradient = () => tf.tidy(() => Array.from(denseWeightGradient(tf.tensor2d(x, [M, K]), tf.tensor2d(g, [M, N]), tf.tensor2d(w, [K, N]), 0).dataSync()));

    // Act
    freshThreads(2, M * K * N);
    const atThreshold = gradient();
    const threadedAtThreshold = threadedProductCount();
    freshThreads(2, M * K * N + 1);
    const belowThreshold = gradient();
    const threadedBelowThreshold = threadedProductCount();

    // Assert
    expect(atThreshold).toEqual(expectedGradient(x, g));
    expect(belowThreshold).toEqual(expectedGradient(x, g));
    expect(threadedAtThreshold).toBe(1);
    expect(threadedBelowThreshold).toBe(0);
  });

  // Kills wasm-kernels.ts:408:9 (true).
  test('run on the threads, it is not run again by the unthreaded kernel (no m × 16 scratch for its copy of x)', () => {
    // Arrange
    configureWasmKernels('simd128');
    const [x, g, w, v] = [smallInts(M * K), smallInts(M * N), smallInts(K * N), smallInts(K * N)];
    const backend = tf.backend() as unknown as WasmBackendInternals;
    const makeOutput = vi.spyOn(backend, 'makeOutput');
    const step = () =>
      tf.tidy(() => {
        const next = denseMomentumStep(tf.tensor2d(x, [M, K]), tf.tensor2d(g, [M, N]), tf.tensor2d(w, [K, N]), tf.tensor2d(v, [K, N]), { lambda: 0, learningRate: 1, momentum: 1 });
        return [Array.from(next.w.dataSync()), Array.from(next.v.dataSync())];
      });
    const shapesAsked = () => makeOutput.mock.calls.map(([shape]) => shape);

    // Act
    freshThreads(2, 0);
    makeOutput.mockClear();
    const threaded = step();
    const threadedShapes = shapesAsked();
    const threadedRuns = threadedProductCount();
    freshThreads(1, 0);
    makeOutput.mockClear();
    const unthreaded = step();
    const unthreadedShapes = shapesAsked();

    // Assert: v' = v + xᵀg, W' = W − v' either way; the scratch only without the threads.
    const nextV = expectedGradient(x, g).map((sum, e) => v[e] + sum);
    const expected = [nextV.map((value, e) => w[e] - value), nextV];
    expect(threaded).toEqual(expected);
    expect(unthreaded).toEqual(expected);
    expect(threadedRuns).toBe(1);
    expect(threadedShapes).toEqual([[K, N], [K, N]]);
    expect(unthreadedShapes).toEqual([[K, N], [K, N], [M * 16]]);
  });
});

describe('g·Wᵀ (denseInputGradient)', () => {
  // Kills wasm-kernels.ts:558:7 (true, <=, g.shape[0] * g.shape[1] / w.shape[0], g.shape[0] / g.shape[1]).
  test('from minWork multiply-adds on it runs as (W·gᵀ)ᵀ on the dense kernel, threaded; below, as one unthreaded kernel; the same values', async () => {
    // Arrange: g is m×n, W is k×n; the product has m·n·k multiply-adds.
    configureWasmKernels('simd128');
    const [g, w] = [smallInts(M * N), smallInts(K * N)];
    const [gt, wt] = [tf.tensor2d(g, [M, N]), tf.tensor2d(w, [K, N])];
    const run = async () => {
      const before = threadedProductCount();
      let values: number[] = [];
      const profile = await tf.profile(() => tf.tidy(() => { values = Array.from(denseInputGradient(gt, wt).dataSync()); }));
      return { kernels: profile.kernels.map((kernel) => kernel.name), threaded: threadedProductCount() - before, values };
    };
    const expected: number[] = [];
    for (let i = 0; i < M; i++)
      for (let p = 0; p < K; p++) {
        let sum = 0;
        for (let j = 0; j < N; j++) sum += g[i * N + j] * w[p * N + j];
        expected.push(sum);
      }

    // Act
    freshThreads(2, M * N * K);
    const atThreshold = await run();
    freshThreads(2, M * N * K + 1);
    const belowThreshold = await run();

    // Assert
    expect(atThreshold).toEqual({ kernels: ['Transpose', 'BnmlpDenseForward', 'Transpose'], threaded: 1, values: expected });
    expect(belowThreshold).toEqual({ kernels: ['BnmlpDenseInputGradient'], threaded: 0, values: expected });
    [gt, wt].forEach((t) => t.dispose());
  });
});

describe('the weight gradient with tfjs ops (kernels off)', () => {
  // Kills wasm-kernels.ts:567:10 (false).
  test('with λ = 0 it is xᵀ·g alone: no 2λW term is computed (which would also turn a non-finite W into NaN)', async () => {
    // Arrange
    configureWasmKernels('off');
    const [x, g] = [smallInts(M * K), smallInts(M * N)];
    const w = smallInts(K * N);
    w[0] = Infinity;
    const [xt, gt, wt] = [tf.tensor2d(x, [M, K]), tf.tensor2d(g, [M, N]), tf.tensor2d(w, [K, N])];
    const run = async (lambda: number) => {
      let values: number[] = [];
      const profile = await tf.profile(() => tf.tidy(() => { values = Array.from(denseWeightGradient(xt, gt, wt, lambda).dataSync()); }));
      return { kernels: profile.kernels.map((kernel) => kernel.name), values };
    };

    // Act
    const withoutDecay = await run(0);
    const withDecay = await run(0.5);

    // Assert: with λ = 0.5, 2λW = W.
    const product = expectedGradient(x, g);
    expect(withoutDecay).toEqual({ kernels: ['Transpose', 'BatchMatMul'], values: product });
    expect(withDecay).toEqual({ kernels: ['Transpose', 'BatchMatMul', 'Multiply', 'Add'], values: product.map((sum, e) => sum + w[e]) });
    [xt, gt, wt].forEach((t) => t.dispose());
  });
});

describe('optional inputs and empty lists', () => {
  // Kills wasm-kernels.ts:604:7 (true), 605:7 (true), 623:7 (true), 642:11 (true).
  test('a missing γ, β or gradient is left out of the kernel\'s inputs (not passed as null)', async () => {
    // Arrange
    configureWasmKernels('simd128');
    const [n, d] = [4, 3];
    const s = tf.tensor2d(smallInts(n * d), [n, d]);
    const g = tf.tensor2d(smallInts(n * d), [n, d]);
    const theta = tf.tensor1d(smallInts(d));
    const v = tf.tensor1d(smallInts(d));
    const inputShapes = async (run: () => void) => (await tf.profile(() => tf.tidy(run))).kernels.map((kernel) => kernel.inputShapes);

    // Act
    const forward = await inputShapes(() => {
      batchNormReluForward(s, null, null, 1e-5);
    });
    const backward = await inputShapes(() => {
      const bn = batchNormReluForward(s, null, null, 1e-5)!;
      batchNormReluBackward(g, bn.pre, bn.normalized, bn.invStd, null);
    });
    const momentum = await inputShapes(() => {
      momentumSteps([{ theta, v, g: null }], 0.1, 0.9);
    });

    // Assert
    expect(forward).toEqual([[[n, d]]]);
    expect(backward).toEqual([[[n, d]], [[n, d], [n, d], [n, d], [d]]]);
    expect(momentum).toEqual([[[d], [d]]]);
    [s, g, theta, v].forEach((t) => t.dispose());
  });

  // Kills wasm-kernels.ts:637:7 (targets.length > 0 → true, targets.length >= 0), 680:7 (pairs.length > 0 → true, pairs.length >= 0).
  test('momentum steps and blends of no tensors are empty, and dispatch no kernel', async () => {
    // Arrange
    configureWasmKernels('simd128');
    let results: unknown[] = [];

    // Act
    const profile = await tf.profile(() => {
      results = [momentumSteps([], 0.1, 0.9), blends([], 0.9)];
    });

    // Assert
    expect(results).toEqual([[], []]);
    expect(profile.kernels).toEqual([]);
  });
});
