import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';
import { CoreArgumentError } from './errors.js';
import {
  allowRelaxedSimd, batchNormReluForward, batchNormReluInference, blends, configureKernelThreads, configureWasmKernels, wasmKernelStatus, denseInputGradient, denseMomentumStep, denseScores, denseWeightGradient, kernelExports,
  momentumSteps, softmaxCrossEntropy, sumOfSquares,
  type WasmKernelVariant, type WasmBackendInternals,
} from './wasm-kernels.js';
import { packedFloats } from './dense-threads.js';
import { createModel, disposeModel, modelFromValues, modelValues } from './model.js';
import { resolveConfig } from './config.js';
import { forwardTrace, inferenceLogits } from './network.js';
import { createMomentumState, disposeMomentumState, trainStep } from './train-step.js';
import { createPrng, nextNormal } from './prng.js';

// The wasm kernels (assembly/) against float64 sums, on every shape path: n < 8
// (scalar), n ≥ 8 with a part panel (n mod 8 ≠ 0) or, past 64, a second group of panels (x·W) and
// an overlapping last column block (weight step), row counts that are not multiples of 4 and,
// past 64, a second tile of rows, k past one 256-term pass of x·W, and k ≥ 16 (the weight step's
// packed copy of x). The equivalence suite checks them again
// inside whole networks against @bnmlp/reference.

const UNIT_ROUNDOFF = 2 ** -24;
const variants: WasmKernelVariant[] = allowRelaxedSimd() ? ['relaxed-simd', 'simd128'] : ['simd128'];
console.info(`wasm kernel builds tested: ${variants.join(', ')}`);

interface Problem {
  readonly m: number;
  readonly k: number;
  readonly n: number;
  readonly seed: number;
  /** Powers of ten for each operand's scale: the bounds must hold across magnitudes. */
  readonly scales: readonly [number, number, number, number];
}

const problemArbitrary = (): fc.Arbitrary<Problem> =>
  fc.record({
    m: fc.integer({ min: 1, max: 130 }),
    k: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 16, max: 300 })),
    n: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 8, max: 70 })),
    seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
    scales: fc.tuple(fc.integer({ min: -3, max: 3 }), fc.integer({ min: -3, max: 3 }), fc.integer({ min: -3, max: 3 }), fc.integer({ min: -3, max: 3 })),
  });

function randomMatrix(prng: ReturnType<typeof createPrng>, size: number, scale: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = nextNormal(prng) * 10 ** scale;
  return out;
}

/** Expects |actual − exact| ≤ limit entrywise; the message names the stage, entry and both values. */
function expectWithin(stage: string, shape: number[], actual: ArrayLike<number>, exact: ArrayLike<number>, limit: ArrayLike<number>): void {
  let worst = -1;
  let worstRatio = 0;
  for (let i = 0; i < exact.length; i++) {
    const ratio = Math.abs(actual[i] - exact[i]) / limit[i];
    if (!(ratio <= worstRatio)) {
      worstRatio = ratio;
      worst = i;
    }
  }
  if (worst >= 0 && !(worstRatio <= 1))
    throw new Error(
      `${stage} [${shape.join('×')}]: entry ${worst} is ${actual[worst]}, float64 gives ${exact[worst]} ` +
        `(|diff| ${Math.abs(actual[worst] - exact[worst]).toExponential(3)} > limit ${limit[worst].toExponential(3)})`,
    );
}

describe.each(variants)('wasm kernels, %s build', (variant) => {
  beforeAll(async () => {
    await initBackend('wasm');
    expect(configureWasmKernels(variant)).toMatchObject({ variant, reason: null });
  });
  afterAll(() => {
    configureWasmKernels('auto');
  });

  test('x·W + b, xᵀ·g + 2λW and the fused momentum step agree with float64 within the float32 dot-product bound', () => {
    fc.assert(
      fc.property(problemArbitrary(), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 0.99, noNaN: true }), (p, lambda, eta, rho) => {
        // Arrange
        const { m, k, n } = p;
        const prng = createPrng(p.seed);
        const x = randomMatrix(prng, m * k, p.scales[0]);
        const w = randomMatrix(prng, k * n, p.scales[1]);
        const b = randomMatrix(prng, n, p.scales[2]);
        const g = randomMatrix(prng, m * n, p.scales[3]);
        const v = randomMatrix(prng, k * n, p.scales[1]);
        const [lambda32, eta32, rho32, decay32] = [Math.fround(lambda), Math.fround(eta), Math.fround(rho), Math.fround(2 * lambda)];

        // Act
        const [scores, gradient, stepW, stepV] = tf.tidy(() => {
          const xt = tf.tensor2d(x, [m, k]);
          const wt = tf.tensor2d(w, [k, n]);
          const gt = tf.tensor2d(g, [m, n]);
          const step = denseMomentumStep(xt, gt, wt, tf.tensor2d(v, [k, n]), { lambda: lambda32, learningRate: eta32, momentum: rho32 });
          return [denseScores(xt, wt, tf.tensor1d(b)), denseWeightGradient(xt, gt, wt, lambda32), step.w, step.v].map((t) => t.dataSync() as Float32Array);
        });

        // Assert: |error| ≤ (terms + 2)·u·Σ|products| covers any summation order, with or without FMA.
        const exactScores = new Float64Array(m * n);
        const scoresLimit = new Float64Array(m * n);
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++) {
            let sum = b[j];
            let magnitude = Math.abs(b[j]);
            for (let q = 0; q < k; q++) {
              sum += x[i * k + q] * w[q * n + j];
              magnitude += Math.abs(x[i * k + q] * w[q * n + j]);
            }
            exactScores[i * n + j] = sum;
            scoresLimit[i * n + j] = (k + 2) * UNIT_ROUNDOFF * magnitude + 1e-44;
          }
        expectWithin(`x·W + b (${variant})`, [m, n], scores, exactScores, scoresLimit);

        const exactGradient = new Float64Array(k * n);
        const gradientLimit = new Float64Array(k * n);
        const exactV = new Float64Array(k * n);
        const vLimit = new Float64Array(k * n);
        const exactW = new Float64Array(k * n);
        const wLimit = new Float64Array(k * n);
        for (let q = 0; q < k; q++)
          for (let j = 0; j < n; j++) {
            const e = q * n + j;
            let sum = decay32 * w[e];
            let magnitude = Math.abs(decay32 * w[e]);
            for (let i = 0; i < m; i++) {
              sum += x[i * k + q] * g[i * n + j];
              magnitude += Math.abs(x[i * k + q] * g[i * n + j]);
            }
            exactGradient[e] = sum;
            gradientLimit[e] = (m + 2) * UNIT_ROUNDOFF * magnitude + 1e-44;
            exactV[e] = rho32 * v[e] + eta32 * sum;
            vLimit[e] = eta32 * gradientLimit[e] + 3 * UNIT_ROUNDOFF * (Math.abs(rho32 * v[e]) + Math.abs(eta32 * sum)) + 1e-44;
            exactW[e] = w[e] - exactV[e];
            wLimit[e] = vLimit[e] + UNIT_ROUNDOFF * Math.abs(exactW[e]) + 1e-44;
          }
        expectWithin(`xᵀ·g + 2λW (${variant})`, [k, n], gradient, exactGradient, gradientLimit);
        expectWithin(`momentum step v (${variant})`, [k, n], stepV, exactV, vLimit);
        expectWithin(`momentum step W (${variant})`, [k, n], stepW, exactW, wLimit);
      }),
    );
  });

  test('a train step runs both kernels on every layer, the input gradients on the dense kernel, and no matMul', async () => {
    // Arrange
    const model = createModel({ inputDim: 40, hiddenDims: [12, 9], classes: 3 }, { seed: 3 });
    const state = createMomentumState(model);
    const prng = createPrng(4);
    const x = { rows: 6, cols: 40, data: randomMatrix(prng, 240, 0) };

    // Act
    const profile = await tf.profile(() => {
      trainStep(model, state, x, [0, 1, 2, 0, 1, 2], { lambda: 0.01, learningRate: 0.1, momentum: 0.9 });
    });

    // Assert
    const kernels = profile.kernels.map((kernel) => kernel.name);
    // x·W on 3 layers, and g·Wᵀ for layers 3 and 2 (denseInputGradient: small, so one kernel each).
    expect(kernels.filter((name) => name === 'BnmlpDenseForward')).toHaveLength(3);
    expect(kernels.filter((name) => name === 'BnmlpDenseInputGradient')).toHaveLength(2);
    expect(kernels.filter((name) => name === 'BnmlpDenseWeightStep')).toHaveLength(3);
    expect(kernels.filter((name) => name === 'BatchMatMul' || name === '_FusedMatMul')).toHaveLength(0);
    // BN + ReLU forward and backward on both hidden layers, the loss layer once (with its bias gradient).
    expect(kernels.filter((name) => name === 'BnmlpBatchNormReluForward')).toHaveLength(2);
    expect(kernels.filter((name) => name === 'BnmlpBatchNormReluBackward')).toHaveLength(2);
    expect(kernels.filter((name) => name === 'BnmlpSoftmaxCrossEntropy')).toHaveLength(1);
    // b, γ, β of every layer in one momentum kernel; the four running averages in one blend.
    expect(kernels.filter((name) => name === 'BnmlpMomentumSteps')).toHaveLength(1);
    expect(kernels.filter((name) => name === 'BnmlpBlends')).toHaveLength(1);
    // Nothing else: each tfjs kernel costs ~10 µs of dispatch, a good part of this small step.
    expect(kernels).toHaveLength(15);
    disposeMomentumState(state);
    disposeModel(model);
  });

  test.each([[1], [2]])('x·W + b across every block edge of the packed kernel, on %i thread(s): exact in small integers', (threads) => {
    // Arrange: 70 rows (a 64-row tile, then 4 + 2), k = 600 (passes of 256, 256, 88), n = 75 (a
    // group of 8 panels, then one whole panel and a part panel of 3); integers in [−3, 3], so every
    // sum is exact in float32 and any dropped, repeated or misplaced term shows.
    const [m, k, n] = [70, 600, 75];
    const ints = (seed: number, size: number) => {
      const prng = createPrng(seed);
      return Float32Array.from({ length: size }, () => Math.round(Math.max(-3, Math.min(3, nextNormal(prng) * 2))));
    };
    const [x, w, b] = [ints(1, m * k), ints(2, k * n), ints(3, n)];
    const expected = new Float32Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let sum = b[j];
        for (let p = 0; p < k; p++) sum += x[i * k + p] * w[p * n + j];
        expected[i * n + j] = sum;
      }
    configureKernelThreads(threads, { minWork: 1 });
    try {
      // Act
      const scores = tf.tidy(() => denseScores(tf.tensor2d(x, [m, k]), tf.tensor2d(w, [k, n]), tf.tensor1d(b)).dataSync());

      // Assert
      expect(wasmKernelStatus().threads).toBe(threads);
      expect(Array.from(scores)).toEqual(Array.from(expected));
    } finally {
      configureKernelThreads('auto', { minWork: 1 << 20 }); // the defaults, which the other tests here expect
    }
  });

  test.each([
    // [k, n, rowBegin, rowEnd]: n < 8 (scalar path), n = 8·q, part panels (n mod 8 = 3, 2), and
    // row ranges in 16-row blocks, 4-row blocks and single rows, from row 0 and from inside.
    [40, 5, 16, 37], [48, 8, 0, 48], [70, 13, 0, 70], [70, 50, 16, 70], [37, 50, 4, 37], [64, 75, 32, 64],
  ])("the weight step's packed W (k = %i, n = %i, rows %i..%i) is packPanels of its new W, and no other panel row is written", (k, n, rowBegin, rowEnd) => {
    // Arrange
    const m = 21;
    const prng = createPrng(k * 100 + n);
    const make = (size: number, scale = 0) => tf.tensor1d(randomMatrix(prng, size, scale));
    const [x, g, w, v] = [make(m * k), make(m * n), make(k * n), make(k * n)];
    const [outW, outV, scratch] = [make(k * n), make(k * n), make(m * 16)];
    // The same values in both: the rows outside [rowBegin, rowEnd) must keep them.
    const initial = randomMatrix(prng, packedFloats(k, n), 1);
    const [stepPacked, expected] = [tf.tensor1d(initial), tf.tensor1d(initial)];
    const backend = tf.backend() as unknown as WasmBackendInternals;
    const at = (t: tf.Tensor) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    const kernels = kernelExports(backend);

    for (const fused of [1, 0]) {
      // Act
      kernels.denseWeightStep(at(x), at(g), at(w), at(v), at(outW), at(outV), at(scratch), m, k, n, 1e-3, 0.1, 0.9, fused, rowBegin, rowEnd, at(stepPacked));
      kernels.packPanels(at(outW), at(expected), k, n, rowBegin, rowEnd);

      // Assert: bit for bit, padding columns included (dataSync reads the heap the kernels wrote).
      expect(Array.from(stepPacked.dataSync()), `fused ${fused}`).toEqual(Array.from(expected.dataSync()));
    }
    [x, g, w, v, outW, outV, scratch, stepPacked, expected].forEach((t) => t.dispose());
  });

  test('g·Wᵀ below the threading threshold is one kernel with the bits of the dense kernel\'s (W·gᵀ)ᵀ', async () => {
    fc.assert(
      fc.property(problemArbitrary(), (p) => {
        // Arrange: g is m×n, W is k×n (a layer with k inputs and n outputs); m·n·k < 2^20.
        const prng = createPrng(p.seed);
        const g = tf.tensor2d(randomMatrix(prng, p.m * p.n, p.scales[0]), [p.m, p.n]);
        const w = tf.tensor2d(randomMatrix(prng, p.k * p.n, p.scales[1]), [p.k, p.n]);

        // Act
        const [fused, viaDense] = tf.tidy(() =>
          [denseInputGradient(g, w), tf.transpose(denseScores(w, tf.transpose(g), tf.zeros([p.m]) as tf.Tensor1D))].map((t) => t.dataSync()),
        );

        // Assert (+ 0: the other path's bias adds 0, which turns −0 into +0)
        expect(Array.from(fused, (value) => value + 0)).toEqual(Array.from(viaDense));
        [g, w].forEach((t) => t.dispose());
      }),
    );
    // Fixed shapes on each side of the kernel's 8-wide paths: the output 8 wide or more in one form
    // and narrower in the other (m rows of g against k rows of W), where FMA and mul + add differ.
    for (const [m, n, k] of [[5, 30, 50], [5, 30, 8], [20, 30, 5], [8, 30, 8], [3, 4, 3]]) {
      const prng = createPrng(m * 1000 + k);
      const g = tf.tensor2d(randomMatrix(prng, m * n, 1), [m, n]);
      const w = tf.tensor2d(randomMatrix(prng, k * n, 1), [k, n]);
      const [fused, viaDense] = tf.tidy(() => [denseInputGradient(g, w), tf.transpose(denseScores(w, tf.transpose(g), tf.zeros([m]) as tf.Tensor1D))].map((t) => t.dataSync()));
      expect(Array.from(fused, (value) => value + 0), `m ${m}, n ${n}, k ${k}`).toEqual(Array.from(viaDense));
      [g, w].forEach((t) => t.dispose());
    }
    const [g, w] = [tf.ones([5, 3]) as tf.Tensor2D, tf.ones([4, 3]) as tf.Tensor2D];
    const profile = await tf.profile(() => tf.tidy(() => denseInputGradient(g, w).dataSync()));
    expect(profile.kernels.map((kernel) => kernel.name)).toEqual(['BnmlpDenseInputGradient']);
    [g, w].forEach((t) => t.dispose());
  });

  test("the loss kernel's bias gradient is the float64 column sum of its gradient, rounded once", () => {
    // Arrange: 3 rows of logits whose gradients' column sums lose bits in a float32 running sum.
    const prng = createPrng(9);
    const [n, c] = [37, 5];
    const logits = tf.tensor2d(randomMatrix(prng, n * c, 1), [n, c]);
    const oneHot = tf.cast(tf.oneHot(tf.tensor1d(Array.from({ length: n }, (_, i) => (i * 7) % c), 'int32'), c), 'float32') as tf.Tensor2D;

    // Act
    const [gradient, biasGradient] = tf.tidy(() => {
      const top = softmaxCrossEntropy(logits, oneHot)!;
      return [top.gradient.dataSync(), top.biasGradient.dataSync()];
    });

    // Assert
    const expected = Array.from({ length: c }, (_, j) => {
      let sum = 0;
      for (let i = 0; i < n; i++) sum += gradient[i * c + j];
      return Math.fround(sum);
    });
    expect(Array.from(biasGradient)).toEqual(expected);
    [logits, oneHot].forEach((t) => t.dispose());
  });

  test('momentumSteps and blends: one kernel for many parameters, each entry the float32 formula', async () => {
    // Arrange: parameters of three shapes, one without a gradient (the bias before BN).
    const prng = createPrng(10);
    const shapes = [[7], [3, 4], [1]];
    const make = (shape: number[]) => tf.tensor(randomMatrix(prng, shape.reduce((p, q) => p * q, 1), 0), shape);
    const targets = shapes.map((shape, i) => ({ theta: make(shape), v: make(shape), g: i === 1 ? null : make(shape) }));
    const [eta, rho, alpha] = [0.3, 0.7, 0.9];
    const f = Math.fround;

    // Act
    let steps: Array<{ theta: Float32Array; v: Float32Array }> = [];
    let blended: Float32Array[] = [];
    const profile = await tf.profile(() =>
      tf.tidy(() => {
        steps = momentumSteps(targets, eta, rho).map((next) => ({ theta: next.theta.dataSync() as Float32Array, v: next.v.dataSync() as Float32Array }));
        blended = blends(targets.map((t) => [t.theta, t.v] as [tf.Tensor, tf.Tensor]), alpha).map((t) => t.dataSync() as Float32Array);
      }),
    );

    // Assert: v' = ρv + ηg and θ' = θ − v' in float32, α·a + (1 − α)·b in float32.
    expect(profile.kernels.map((kernel) => kernel.name)).toEqual(['BnmlpMomentumSteps', 'BnmlpBlends']);
    targets.forEach(({ theta, v, g }, i) => {
      const [th, vv, gg] = [theta.dataSync(), v.dataSync(), g?.dataSync()];
      const nextV = Array.from(vv, (value, e) => (gg ? f(f(f(rho) * value) + f(f(eta) * gg[e])) : f(f(rho) * value)));
      expect(Array.from(steps[i].v)).toEqual(nextV);
      expect(Array.from(steps[i].theta)).toEqual(Array.from(th, (value, e) => f(value - nextV[e])));
      expect(Array.from(blended[i])).toEqual(Array.from(th, (value, e) => f(f(f(alpha) * value) + f(f(1 - f(alpha)) * vv[e]))));
    });
    targets.forEach(({ theta, v, g }) => [theta, v, g].forEach((t) => t?.dispose()));
  });

  test("the training forward pass keeps the BN kernel's batch statistics (summed in float64, rounded once)", () => {
    // Arrange: W1 = I and b1 = 0, so the scores are x itself. Feature 0 is [1, 2^-24, 2^-24]: its
    // float64 mean (1 + 2^-23)/3 rounds to 0.33333337…, while a float32 running sum (tfjs's
    // mean) loses both 2^-24 terms against 1 and gives 0.33333334…
    const values = modelValues(createModel({ inputDim: 2, hiddenDims: [2], classes: 2, batchNorm: true }, { seed: 1 }));
    values[0].W = Float32Array.from([1, 0, 0, 1]);
    values[0].b = new Float32Array(2);
    const model = modelFromValues(resolveConfig('test', { inputDim: 2, hiddenDims: [2], classes: 2, batchNorm: true }), values);
    const x = Float32Array.from([1, 0.5, 2 ** -24, 0.25, 2 ** -24, 2]);
    const float64Mean = (1 + 2 ** -23) / 3;
    expect(Math.fround(float64Mean)).not.toBe(Math.fround(Math.fround(Math.fround(1 + 2 ** -24) + 2 ** -24) / 3));

    // Act
    const batchMean = tf.tidy(() => forwardTrace(model, tf.tensor2d(x, [3, 2]), 'train').layers[0].batchMean!.dataSync());

    // Assert
    expect(batchMean[0]).toBe(Math.fround(float64Mean));
    expect(batchMean[1]).toBe(Math.fround(2.75 / 3));
    disposeModel(model);
  });

  test('with weights reused unchanged (inference), simd128 leaves x·W to XNNPACK, which keeps W packed; relaxed-simd keeps its kernel', async () => {
    // Arrange
    const x = tf.ones([3, 20]) as tf.Tensor2D;
    const w = tf.ones([20, 9]) as tf.Tensor2D;
    const b = tf.zeros([9]) as tf.Tensor1D;

    // Act
    const profile = await tf.profile(() => tf.tidy(() => denseScores(x, w, b, true).dataSync()));

    // Assert
    expect(profile.kernels.map((kernel) => kernel.name)).toContain(variant === 'simd128' ? 'BatchMatMul' : 'BnmlpDenseForward');
    [x, w, b].forEach((t) => t.dispose());
  });

  test('the loss layer: (softmax − Y)/n and the mean cross-entropy agree with float64 to float32 rounding, for logits up to 1e4 in size', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 2, max: 12 }), fc.integer({ min: -3, max: 4 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (n, c, scale, seed) => {
        // Arrange
        const prng = createPrng(seed);
        const z = randomMatrix(prng, n * c, scale);
        const y = new Float32Array(n * c);
        for (let i = 0; i < n; i++) y[i * c + ((i * 7 + seed) % c)] = 1;
        // Act
        const { gradient, loss } = tf.tidy(() => {
          const out = softmaxCrossEntropy(tf.tensor2d(z, [n, c]), tf.tensor2d(y, [n, c]))!;
          return { gradient: out.gradient.dataSync() as Float32Array, loss: out.loss.dataSync()[0] };
        });
        // Assert: float64 log-sum-exp of the same float32 logits.
        const expected = new Float64Array(n * c);
        let expectedLoss = 0;
        for (let i = 0; i < n; i++) {
          const row = Array.from(z.subarray(i * c, (i + 1) * c));
          const max = Math.max(...row);
          const lse = max + Math.log(row.reduce((sum, v) => sum + Math.exp(v - max), 0));
          row.forEach((v, j) => {
            expected[i * c + j] = (Math.exp(v - lse) - y[i * c + j]) / n;
            expectedLoss -= (y[i * c + j] * (v - lse)) / n;
          });
        }
        expectWithin('softmax cross-entropy gradient', [n, c], gradient, expected, Array.from(expected, (e) => 4 * UNIT_ROUNDOFF * Math.abs(e) + 1e-45));
        expect(Math.abs(loss - expectedLoss)).toBeLessThanOrEqual(4 * UNIT_ROUNDOFF * Math.abs(expectedLoss) + 1e-45);
      }),
      { numRuns: 60 },
    );
  });

  test('the L2 sum Σw² over the 153,600 first-layer weights is the float64 sum rounded once (float32 summation drifts by ~3e-5)', () => {
    // Arrange: He-scaled weights of the report's first layer.
    const prng = createPrng(7);
    const w = randomMatrix(prng, 3072 * 50, 0).map((v) => v * Math.sqrt(2 / 3072));
    let exact = 0;
    for (const v of w) exact += v * v;

    // Act
    const sum = tf.tidy(() => sumOfSquares(tf.tensor2d(w, [3072, 50])).dataSync()[0]);

    // Assert: within the float32 rounding of the result (2^-24 relative), not float32 summation's ~n·2^-24.
    expect(Math.abs(sum - exact) / exact).toBeLessThanOrEqual(UNIT_ROUNDOFF);
  });

  test('inference-mode BN + ReLU in one kernel has the bits of the op-by-op forward (any width, with or without γ and β, NaN and −0 among the inputs)', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 40 }), d: fc.integer({ min: 1, max: 23 }), seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
          scale: fc.integer({ min: -3, max: 3 }), withGamma: fc.boolean(), withBeta: fc.boolean(),
        }),
        ({ n, d, seed, scale, withGamma, withBeta }) => {
          // Arrange: running statistics as training leaves them (variance > 0), and a NaN and a −0 among the scores.
          const prng = createPrng(seed);
          const scores = randomMatrix(prng, n * d, scale);
          scores[0] = NaN;
          if (n * d > 1) scores[1] = -0;
          const mean = randomMatrix(prng, d, scale);
          const variance = randomMatrix(prng, d, 2 * scale).map((x) => x * x + 1e-3);
          const [gamma, beta] = [withGamma ? randomMatrix(prng, d, 0) : null, withBeta ? randomMatrix(prng, d, 0) : null];
          const eps = 1e-5;

          // Act
          const [fused, opByOp] = tf.tidy(() => {
            const s = tf.tensor2d(scores, [n, d]);
            const [m, v] = [tf.tensor1d(mean), tf.tensor1d(variance)];
            const [g, b] = [gamma && tf.tensor1d(gamma), beta && tf.tensor1d(beta)];
            const invStd = tf.rsqrt(tf.add(v, eps));
            let pre = tf.mul(tf.sub(s, m), invStd);
            if (g) pre = tf.mul(pre, g);
            if (b) pre = tf.add(pre, b);
            return [batchNormReluInference(s, m, v, eps, g, b)!.dataSync(), tf.relu(pre).dataSync()];
          });

          // Assert: Object.is tells −0 from 0 and NaN from NaN.
          const differing = [...opByOp.keys()].filter((i) => !Object.is(fused[i], opByOp[i]));
          expect(differing.map((i) => `entry ${i}: kernel ${fused[i]}, ops ${opByOp[i]}`)).toEqual([]);
        },
      ),
      { numRuns: 60 },
    );
  });

  test('inference-mode BN + ReLU in one kernel turns a −0 pre-activation into 0 and keeps a NaN, as tf.relu does, in the SIMD lanes and the scalar tail', () => {
    // Arrange: d = 6 (4 SIMD lanes, 2 scalar); mean 0 and no β, so a −0 score stays −0 up to the ReLU.
    const d = 6;
    const scores = Float32Array.from([-0, NaN, 1, -1, -0, NaN]);
    const [fused, opByOp] = tf.tidy(() => {
      const s = tf.tensor2d(scores, [1, d]);
      const [mean, variance, gamma] = [tf.zeros([d]) as tf.Tensor1D, tf.ones([d]) as tf.Tensor1D, tf.fill([d], 2) as tf.Tensor1D];
      // Act
      const kernel = batchNormReluInference(s, mean, variance, 1e-5, gamma, null)!.dataSync();
      return [kernel, tf.relu(tf.mul(tf.mul(tf.sub(s, mean), tf.rsqrt(tf.add(variance, 1e-5))), gamma)).dataSync()];
    });

    // Assert
    expect([...fused].map((x) => Object.is(x, -0) ? '-0' : String(x))).toEqual([...opByOp].map((x) => Object.is(x, -0) ? '-0' : String(x)));
  });

  test("training-mode BN + ReLU's ReLU is tf.relu of its own pre-activation: a NaN score stays NaN (so the loss shows it), −0 becomes 0", () => {
    // Arrange: d = 6 (4 SIMD lanes, 2 scalar); a NaN in column 1 makes that column's statistics and
    // every entry of it NaN; column 4 has a −0 pre-activation in row 0 (mean 0, no β).
    const scores = Float32Array.from([-1, NaN, 1, 2, -1, 3, 1, 0, -1, -2, 1, -3]);
    const [relu, expected] = tf.tidy(() => {
      // Act
      const out = batchNormReluForward(tf.tensor2d(scores, [2, 6]), tf.fill([6], 2) as tf.Tensor1D, null, 1e-5)!;
      return [out.relu.dataSync(), tf.relu(out.pre).dataSync()];
    });

    // Assert
    const show = (xs: ArrayLike<number>) => Array.from(xs, (x) => (Object.is(x, -0) ? '-0' : String(x)));
    expect(show(relu)).toEqual(show(expected));
    expect(Number.isNaN(relu[1]) && Number.isNaN(relu[7])).toBe(true);
  });

  test('predict runs one inference BN + ReLU kernel per hidden layer and no tfjs elementwise kernels over the batch, and leaves no tensor behind', async () => {
    // Arrange
    const model = createModel({ inputDim: 7, hiddenDims: [6, 5], classes: 3 }, { seed: 3 });
    const x = tf.tensor2d(randomMatrix(createPrng(4), 9 * 7, 0), [9, 7]);
    const tensorsBefore = tf.memory().numTensors;

    // Act
    const profile = await tf.profile(() => tf.tidy(() => inferenceLogits(model, x)).dispose());
    const relu = batchNormReluInference(x, model.layers[0].b, model.layers[0].b, 1e-5, null, null)!;

    // Assert: per hidden layer x·W (ours, or XNNPACK's BatchMatMul + Add on simd128), add and rsqrt
    // on the d running variances, then the kernel; no Sub, Mul or Relu over the batch.
    const names = profile.kernels.map((kernel) => kernel.name);
    expect(names.filter((name) => name === 'BnmlpBatchNormReluInference')).toHaveLength(2);
    expect(names.filter((name) => name === 'Rsqrt')).toHaveLength(2);
    expect(names.filter((name) => ['Sub', 'Mul', 'Relu', 'Maximum'].includes(name))).toEqual([]);
    // Outside a tidy, the kernel's invStd is disposed: only its output is new.
    expect(tf.memory().numTensors).toBe(tensorsBefore + 1);
    [relu, x].forEach((t) => t.dispose());
    disposeModel(model);
  });

  test("predict's logits (inferenceLogits) are forwardTrace's inference logits, bit for bit, with and without BN", () => {
    for (const batchNorm of [true, false]) {
      // Arrange: running averages moved off their initial 0 and 1 by two train steps.
      const config = { inputDim: 7, hiddenDims: [6, 5], classes: 3, batchNorm };
      const model = createModel(config, { seed: 3 });
      const state = createMomentumState(model);
      const prng = createPrng(4);
      const x = randomMatrix(prng, 9 * 7, 0);
      const labels = Uint8Array.from({ length: 9 }, (_, i) => i % 3);
      for (let i = 0; i < 2; i++) trainStep(model, state, { rows: 9, cols: 7, data: x }, labels, { lambda: 0.01, learningRate: 0.1, momentum: 0.9 });

      // Act
      const [lean, traced] = tf.tidy(() => {
        const input = tf.tensor2d(x, [9, 7]);
        return [inferenceLogits(model, input).dataSync(), forwardTrace(model, input, 'inference').logits.dataSync()];
      });

      // Assert
      expect([...lean], `batchNorm ${batchNorm}`).toEqual([...traced]);
      disposeMomentumState(state);
      disposeModel(model);
    }
  });

  test('every kernel writes only its outputs and scratch (the rest of the tfjs heap is unchanged)', () => {
    // Arrange: inputs, then one tensor per output or scratch buffer.
    const [m, k, n] = [37, 70, 13];
    const prng = createPrng(5);
    const make = (shape: number[]) => tf.tensor(randomMatrix(prng, shape.reduce((p, q) => p * q, 1), 0), shape);
    const [x, g, w, v, gamma, beta, theta] = [[m, k], [m, n], [k, n], [k, n], [n], [n], [n]].map(make);
    const outputs = {
      outW: make([k, n]), outV: make([k, n]), denseScratch: make([m * 16]), scores: make([m, n]),
      mean: make([n]), variance: make([n]), invStd: make([n]), normalized: make([m, n]), pre: make([m, n]), relu: make([m, n]), inferenceRelu: make([m, n]), bnScratch: make([8 * n]),
      gS: make([m, n]), dGamma: make([n]), dBeta: make([n]), outTheta: make([n]), outThetaV: make([n]), blended: make([n]),
      ceGrad: make([m, n]), ceLoss: make([1]), sumSq: make([1]), packedW: make([packedFloats(k, n)]), stepPackedW: make([packedFloats(k, n)]), forwardTile: make([kernelExports(tf.backend() as unknown as WasmBackendInternals).forwardTileFloats()]),
    };
    const o = outputs;
    const backend = tf.backend() as unknown as WasmBackendInternals;
    const at = (t: tf.Tensor) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    const kernels = kernelExports(backend);
    const before = wasmHeap().slice();

    // Act
    kernels.denseWeightStep(at(x), at(g), at(w), at(v), at(o.outW), at(o.outV), at(o.denseScratch), m, k, n, 0.1, 0.2, 0.9, 1, 0, k, at(o.stepPackedW));
    kernels.packPanels(at(w), at(o.packedW), k, n, 0, k);
    kernels.denseForwardPacked(at(x), at(o.packedW), 0, at(o.scores), at(o.forwardTile), m, k, n);
    kernels.batchNormReluForward(at(o.scores), at(gamma), at(beta), at(o.mean), at(o.variance), at(o.invStd), at(o.normalized), at(o.pre), at(o.relu), at(o.bnScratch), m, n, 1e-5);
    kernels.batchNormReluBackward(at(g), at(o.pre), at(o.normalized), at(o.invStd), at(gamma), at(o.dGamma), at(o.dBeta), at(o.gS), at(o.bnScratch), m, n);
    kernels.batchNormReluInference(at(o.scores), at(o.mean), at(o.invStd), at(gamma), at(beta), at(o.inferenceRelu), m, n);
    kernels.momentumStep(at(theta), at(gamma), at(beta), at(o.outTheta), at(o.outThetaV), n, 0.1, 0.9);
    kernels.blend(at(gamma), at(beta), at(o.blended), n, 0.9);
    kernels.softmaxCrossEntropy(at(o.scores), at(g), at(o.ceGrad), at(o.ceLoss), m, n);
    kernels.sumSquares(at(w), at(o.sumSq), k * n);

    // Assert
    const after = wasmHeap();
    const written = Object.values(outputs).map((t) => [at(t), at(t) + t.size * 4]).sort((p, q) => p[0] - q[0]);
    const changedOutside: string[] = [];
    let from = 0;
    for (const [lo, hi] of [...written, [after.length, after.length]]) {
      if (Buffer.compare(before.subarray(from, lo), after.subarray(from, lo)) !== 0) changedOutside.push(`bytes ${from}..${lo}`);
      from = Math.max(from, hi);
    }
    expect(changedOutside).toEqual([]);
    const unchanged = Object.entries(outputs).filter(([, t]) => Buffer.compare(before.subarray(at(t), at(t) + t.size * 4), after.subarray(at(t), at(t) + t.size * 4)) === 0);
    expect(unchanged.map(([name]) => name)).toEqual([]);
    [x, g, w, v, gamma, beta, theta, ...Object.values(outputs)].forEach((t) => t.dispose());
  });

  test('after the tfjs heap grows, the kernels see the new memory and still compute the same values', () => {
    // Arrange
    const prng = createPrng(6);
    const x = tf.tensor2d(randomMatrix(prng, 20 * 30, 0), [20, 30]);
    const w = tf.tensor2d(randomMatrix(prng, 30 * 11, 0), [30, 11]);
    const b = tf.tensor1d(randomMatrix(prng, 11, 0));
    const first = tf.tidy(() => denseScores(x, w, b).dataSync().slice());
    const bytesBefore = heapBytes();

    // Act: a tensor larger than the whole heap forces memory.grow, which detaches the old buffer.
    const big = tf.zeros([Math.ceil(bytesBefore / 4) + (16 << 20)]);
    const second = tf.tidy(() => denseScores(x, w, b).dataSync().slice());

    // Assert
    expect(heapBytes()).toBeGreaterThan(bytesBefore);
    expect(Array.from(second)).toEqual(Array.from(first));
    [x, w, b, big].forEach((t) => t.dispose());
  });
});

/** The active tfjs wasm module's whole memory, as it is now (a grow replaces the buffer). */
function wasmHeap(): Uint8Array {
  const backend = tf.backend() as unknown as WasmBackendInternals;
  return new Uint8Array((backend.wasm.asm!.memory as { buffer: ArrayBuffer }).buffer);
}

function heapBytes(): number {
  return wasmHeap().byteLength;
}

describe('configureWasmKernels', () => {
  afterAll(() => {
    configureWasmKernels('auto');
  });

  test("'off' runs tfjs ops on wasm, and the status says so", async () => {
    // Arrange
    await initBackend('wasm');
    const status = configureWasmKernels('off');
    const x = tf.ones([2, 3]) as tf.Tensor2D;
    const w = tf.ones([3, 8]) as tf.Tensor2D;
    const b = tf.zeros([8]) as tf.Tensor1D;

    // Act
    const profile = await tf.profile(() => tf.tidy(() => denseScores(x, w, b).dataSync()));

    // Assert
    expect(status).toEqual({ choice: 'off', variant: null, reason: "turned off ('off')", threads: 1, threadsReason: 'no kernel build runs' });
    expect(wasmKernelStatus()).toEqual(status);
    expect(profile.kernels.map((kernel) => kernel.name)).toContain('BatchMatMul');
    [x, w, b].forEach((t) => t.dispose());
  });

  test('allowRelaxedSimd keeps an explicit choice', () => {
    // Arrange
    configureWasmKernels('simd128');

    // Act
    allowRelaxedSimd();

    // Assert
    expect(wasmKernelStatus()).toMatchObject({ choice: 'simd128', variant: 'simd128' });
  });

  test("'auto' picks the fastest build this runtime validates", () => {
    expect(configureWasmKernels('auto')).toMatchObject({ choice: 'auto', variant: variants[0], reason: null });
  });

  test('a tfjs module with shared memory (its threaded build) cannot host the kernels: instantiation is refused, which sends that backend to tfjs ops', () => {
    // Arrange
    const memory = new (globalThis as unknown as { WebAssembly: { Memory: new (d: object) => object } }).WebAssembly.Memory({ initial: 1, maximum: 4, shared: true });
    const fake = { wasm: { asm: { memory } } } as unknown as WasmBackendInternals;

    // Act / Assert
    expect(() => kernelExports(fake)).toThrow(/shared|memory/i);
  });

  test('an unknown choice is a CoreArgumentError naming the choices', () => {
    expect(() => configureWasmKernels('avx' as 'auto')).toThrow(CoreArgumentError);
    expect(() => configureWasmKernels('avx' as 'auto')).toThrow(/configureWasmKernels.*choice.*auto, relaxed-simd, simd128, off.*"avx"/);
  });
});
