import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import * as tf from '@tensorflow/tfjs-core';
import { forward } from './api.js';
import type { InitScheme } from './config.js';
import { cloneModel, createModel, disposeModel, modelFromValues, modelValues, parameterEntries, type CoreModel, type LayerValues } from './model.js';
import { resolveConfig } from './config.js';
import { CoreArgumentError } from './errors.js';
import { createPrng } from './prng.js';
import { modelFromWeights, modelToWeights } from './weights-format.js';
import { createMomentumState, disposeMomentumState, trainStep } from './train-step.js';
import { availableBackends, useBackend } from './test-support/backends.js';
import { caseData, coreModelOf } from './test-support/arbitraries.js';

const backends = await availableBackends();

const configArbitrary = fc.record({
  inputDim: fc.integer({ min: 1, max: 12 }),
  hiddenDims: fc.array(fc.integer({ min: 1, max: 10 }), { maxLength: 3 }),
  classes: fc.integer({ min: 2, max: 6 }),
  batchNorm: fc.boolean(),
  bnAffine: fc.boolean(),
});
const initArbitrary: fc.Arbitrary<InitScheme> = fc.oneof(
  fc.constant({ kind: 'he' } as const),
  fc.constant({ kind: 'xavier' } as const),
  fc.double({ min: 0, max: 3, noNaN: true }).map((sigma) => ({ kind: 'normal', sigma }) as const),
);

/** The reference network's values rounded to float32, in the core's LayerValues layout. */
function roundedReferenceValues(net: ref.Network) {
  const f32 = (a: Float64Array | null | undefined) => (a ? Float32Array.from(a) : null);
  return net.layers.map((layer) => ({
    W: f32(layer.W.data),
    b: f32(layer.b),
    gamma: f32(layer.bn?.gamma),
    beta: f32(layer.bn?.beta),
    runningMean: f32(layer.bn?.runningMean),
    runningVar: f32(layer.bn?.runningVar),
  }));
}

describe.each(backends)('models on %s', (backend) => {
  beforeAll(async () => {
    await useBackend(backend);
  });

  test('createModel(seed) holds the reference createNetwork(seed) weights rounded to float32, for he, xavier and normal init', () => {
    fc.assert(
      fc.property(configArbitrary, initArbitrary, fc.integer({ min: 0, max: 2 ** 32 - 1 }), (config, init, seed) => {
        // Act
        const model = createModel(config, { init, seed });
        const net = ref.createNetwork(config, init, ref.createPrng(seed));
        try {
          // Assert (toEqual on Float32Arrays: bit for bit, up to ±0)
          expect(modelValues(model)).toEqual(roundedReferenceValues(net));
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  test('createModel with a caller PRNG continues its stream as createNetwork does', () => {
    // Arrange
    const config = { inputDim: 3, hiddenDims: [4], classes: 2 };
    const prng = createPrng(8);
    const refPrng = ref.createPrng(8);

    // Act: two models in a row from one stream
    const first = createModel(config, { prng });
    const second = createModel(config, { prng });
    const refFirst = ref.createNetwork(config, { kind: 'he' }, refPrng);
    const refSecond = ref.createNetwork(config, { kind: 'he' }, refPrng);
    try {
      // Assert
      expect(modelValues(first)).toEqual(roundedReferenceValues(refFirst));
      expect(modelValues(second)).toEqual(roundedReferenceValues(refSecond));
      expect(modelValues(second)).not.toEqual(modelValues(first));
      expect(prng).toEqual(refPrng);
    } finally {
      disposeModel(first);
      disposeModel(second);
    }
  });

  test('parameterEntries names, order and shapes are the reference parameters()', () => {
    fc.assert(
      fc.property(configArbitrary, (config) => {
        const model = createModel(config);
        try {
          const net = ref.createNetwork(config);
          expect(parameterEntries(model).map((e) => [e.name, e.kind, e.layer, e.variable.shape])).toEqual(ref.parameters(net).map((p) => [p.name, p.kind, p.layer, [...p.shape]]));
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  // Each constructor, then its dispose, must return tf.memory() to where it was: tensors and bytes.
  const template = { inputDim: 5, hiddenDims: [4, 3], classes: 3 };
  test.each([
    ['createModel → disposeModel', () => disposeModel(createModel(template))],
    ['modelFromWeights → disposeModel', (source: CoreModel) => disposeModel(modelFromWeights(modelToWeights(source)))],
    ['cloneModel → disposeModel', (source: CoreModel) => disposeModel(cloneModel(source))],
    ['createMomentumState → disposeMomentumState', (source: CoreModel) => disposeMomentumState(createMomentumState(source))],
  ] as const)('%s frees every tensor and byte it allocated', (_name, roundTrip) => {
    // Arrange
    const source = createModel(template, { seed: 4 });
    try {
      const before = tf.memory();

      // Act
      roundTrip(source);

      // Assert
      const after = tf.memory();
      expect({ numTensors: after.numTensors, numBytes: after.numBytes }).toEqual({ numTensors: before.numTensors, numBytes: before.numBytes });
    } finally {
      disposeModel(source);
    }
  });

  test('cloneModel is an independent copy: training the clone or disposing the original leaves the other intact', () => {
    // Arrange
    const data = caseData({ inputDim: 4, hiddenDims: [5], classes: 3, batch: 6, batchNorm: true, bnAffine: true, lambda: 0.1, seed: 12 });
    const original = coreModelOf(data);
    const clone = cloneModel(original);
    const state = createMomentumState(clone);
    let disposed: CoreModel | null = original;
    try {
      const values = modelValues(original);
      expect(modelValues(clone)).toEqual(values);

      // Act
      trainStep(clone, state, data.x, data.labels, { lambda: 0.1, learningRate: 0.2, momentum: 0.9 });

      // Assert
      expect(modelValues(original)).toEqual(values);
      expect(modelValues(clone)).not.toEqual(values);
      const trained = modelValues(clone);
      disposeModel(original);
      disposed = null;
      expect(modelValues(clone)).toEqual(trained);
      const p = forward(clone, data.x, 'inference');
      expect(p.shape).toEqual([6, 3]);
      p.dispose();
    } finally {
      if (disposed) disposeModel(disposed);
      disposeModel(clone);
      disposeMomentumState(state);
    }
  });

  test('modelValues returns copies: writing into them does not change the model', () => {
    const model = createModel({ inputDim: 3, hiddenDims: [2], classes: 2 }, { seed: 3 });
    try {
      const values = modelValues(model);
      const snapshot = modelValues(model);
      values[0].W.fill(7);
      values[0].runningVar!.fill(7);
      expect(modelValues(model)).toEqual(snapshot);
    } finally {
      disposeModel(model);
    }
  });
});

describe('modelFromValues validates its layers', () => {
  const config = resolveConfig('test', { inputDim: 3, hiddenDims: [2], classes: 2, batchNorm: true });
  const valid = (): LayerValues[] => [
    { W: new Float32Array(6), b: new Float32Array(2), gamma: new Float32Array(2).fill(1), beta: new Float32Array(2), runningMean: new Float32Array(2), runningVar: new Float32Array(2).fill(1) },
    { W: new Float32Array(4), b: new Float32Array(2), gamma: null, beta: null, runningMean: null, runningVar: null },
  ];

  test('valid values build a model', () => {
    const model = modelFromValues(config, valid());
    expect(modelValues(model)).toEqual(valid());
    disposeModel(model);
  });

  // A BN layer with a running mean but no running variance used to be normalised by the fused
  // wasm kernel and not by the tfjs path; every half-present, missing, extra or mis-sized array is refused.
  test.each([
    ['values', (v: LayerValues[]) => v.slice(0, 1), "argument 'values' must be an array of 2 layers, got array(1)"],
    ['W', (v: LayerValues[]) => ((v[0].W = new Float32Array(5)), v), "argument 'values[0].W' must be a Float32Array(6), got Float32Array(5)"],
    ['b', (v: LayerValues[]) => ((v[1].b = new Float64Array(2) as unknown as Float32Array), v), "argument 'values[1].b' must be a Float32Array(2), got Float64Array(2)"],
    ['gamma', (v: LayerValues[]) => ((v[0].gamma = null), v), "argument 'values[0].gamma' must be a Float32Array(2), got null"],
    ['beta on the output layer', (v: LayerValues[]) => ((v[1].beta = new Float32Array(2)), v), "argument 'values[1].beta' must be null, got Float32Array(2)"],
    ['runningMean', (v: LayerValues[]) => ((v[0].runningMean = new Float32Array(3)), v), "argument 'values[0].runningMean' must be a Float32Array(2), got Float32Array(3)"],
    ['runningVar alone missing', (v: LayerValues[]) => ((v[0].runningVar = null), v), "argument 'values[0].runningVar' must be a Float32Array(2), got null"],
    ['runningVar on the output layer', (v: LayerValues[]) => ((v[1].runningVar = new Float32Array(2)), v), "argument 'values[1].runningVar' must be null, got Float32Array(2)"],
  ])('refuses a bad %s', (_name, spoil, message) => {
    // Arrange
    const values = spoil(valid());
    // Act
    const act = () => modelFromValues(config, values);
    // Assert
    expect(act).toThrow(CoreArgumentError);
    expect(act).toThrow(`modelFromValues: ${message}`);
  });

  test('without bnAffine, γ and β must be null on BN layers too', () => {
    const noAffine = resolveConfig('test', { inputDim: 3, hiddenDims: [2], classes: 2, batchNorm: true, bnAffine: false });
    const values = valid();
    expect(() => modelFromValues(noAffine, values)).toThrow("argument 'values[0].gamma' must be null, got Float32Array(2)");
    values[0].gamma = null;
    values[0].beta = null;
    const model = modelFromValues(noAffine, values);
    disposeModel(model);
  });
});
