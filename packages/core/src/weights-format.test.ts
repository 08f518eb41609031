import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import * as ref from '@bnmlp/reference';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './backend.js';
import { disposeModel, modelValues } from './model.js';
import { modelFromWeights, modelToWeights, type WeightsFile } from './weights-format.js';
import { caseArbitrary, caseData, coreModelOf } from './test-support/arbitraries.js';
import { expectCoreArgumentError } from './test-support/assertions.js';

// The weights file shared with @bnmlp/reference: the core writes float32 exactly, the reference
// reads it exactly and writes it back identically; float64 files are rounded to float32 on load.
// Pure encoding, so one backend suffices.
beforeAll(async () => {
  await initBackend('cpu');
});

const cases = caseArbitrary({ maxInput: 12, maxWidth: 10, maxBatch: 4, maxDepth: 4 });

describe('round trips', () => {
  test('modelToWeights → reference networkFromWeights → networkToWeights(float32) reproduces the file exactly', () => {
    fc.assert(
      fc.property(cases, (c) => {
        // Arrange: random non-default b, γ, β and running averages (caseData)
        const model = coreModelOf(caseData(c));
        try {
          const file = modelToWeights(model);

          // Act
          const back = ref.networkToWeights(ref.networkFromWeights(JSON.stringify(file)), 'float32');

          // Assert
          expect(back).toEqual(file);
        } finally {
          disposeModel(model);
        }
      }),
    );
  });

  test('modelFromWeights(modelToWeights(m)) holds the same float32 values bit for bit', () => {
    fc.assert(
      fc.property(cases, (c) => {
        const model = coreModelOf(caseData(c));
        const loaded = modelFromWeights(JSON.stringify(modelToWeights(model)));
        try {
          expect(loaded.config).toEqual(model.config);
          expect(modelValues(loaded)).toEqual(modelValues(model));
        } finally {
          disposeModel(model);
          disposeModel(loaded);
        }
      }),
    );
  });

  test('a float64 file (reference networkToWeights) is rounded to float32 on load, to nearest', () => {
    fc.assert(
      fc.property(cases, (c) => {
        // Arrange: a float64 network whose values are not float32-representable
        const prng = ref.createPrng(c.seed);
        const net = ref.createNetwork({ inputDim: c.inputDim, hiddenDims: c.hiddenDims, classes: c.classes, batchNorm: c.batchNorm, bnAffine: c.bnAffine }, { kind: 'he' }, prng);
        for (const layer of net.layers) {
          for (let i = 0; i < layer.b.length; i++) layer.b[i] = 0.1 + ref.nextNormal(prng);
          if (layer.bn) for (let i = 0; i < layer.bn.runningVar.length; i++) layer.bn.runningVar[i] = 1 / 3 + Math.abs(ref.nextNormal(prng));
        }

        // Act
        const model = modelFromWeights(ref.networkToWeights(net, 'float64') as unknown as WeightsFile);
        try {
          // Assert: each value is Math.fround of the float64 one (round to nearest even)
          const values = modelValues(model);
          net.layers.forEach((layer, l) => {
            expect(values[l].W).toEqual(Float32Array.from(layer.W.data, Math.fround));
            expect(values[l].b).toEqual(Float32Array.from(layer.b, Math.fround));
            expect(values[l].runningVar).toEqual(layer.bn ? Float32Array.from(layer.bn.runningVar, Math.fround) : null);
          });
          expect(Array.from(values[0].b).some((v, i) => v !== net.layers[0].b[i])).toBe(true);
        } finally {
          disposeModel(model);
        }
      }),
    );
  });
});

describe('malformed files', () => {
  const config = { inputDim: 3, hiddenDims: [2], classes: 2 } as const;
  let validFile: WeightsFile;
  beforeAll(() => {
    const model = coreModelOf(caseData({ ...config, hiddenDims: [2], batch: 2, batchNorm: true, bnAffine: true, lambda: 0, seed: 1 }));
    validFile = modelToWeights(model);
    disposeModel(model);
  });
  const load = (edit: (file: WeightsFile) => unknown) => () => {
    const file = structuredClone(validFile);
    return modelFromWeights((edit(file) ?? file) as WeightsFile);
  };
  const rejects = (fn: () => unknown, fields: Parameters<typeof expectCoreArgumentError>[1]) => {
    const before = tf.memory().numTensors;
    expectCoreArgumentError(fn, { op: 'modelFromWeights', ...fields });
    expect(tf.memory().numTensors, 'tensors left by a rejected load').toBe(before);
  };

  test('wrong format, version or dtype', () => {
    rejects(load((f) => void ((f as { format: string }).format = 'other')), { argument: 'format', expected: "'bnmlp-weights'", actual: '"other"' });
    rejects(load((f) => void ((f as { version: number }).version = 2)), { argument: 'version', expected: '1', actual: '2' });
    rejects(load((f) => void ((f as { dtype: string }).dtype = 'float16')), { argument: 'dtype', expected: "'float32' or 'float64'", actual: '"float16"' });
    rejects(() => modelFromWeights(42 as unknown as WeightsFile), { argument: 'file', expected: 'a weights object', actual: '42' });
  });

  test('an invalid config, or the wrong number of layers', () => {
    rejects(load((f) => void (f.config = { ...f.config, hiddenDims: [0] })), { argument: 'config.hiddenDims[0]', expected: 'a positive integer', actual: '0' });
    rejects(load((f) => void (f.config = null as unknown as WeightsFile['config'])), { argument: 'config', expected: 'an object', actual: 'null' });
    rejects(load((f) => void f.layers.pop()), { argument: 'layers', expected: 'an array of 2 layers', actual: 'array(1)' });
  });

  test('arrays of the wrong length, or missing where the config needs them', () => {
    // W1 is 3 × 2 = 6 float32 values; drop one (4 bytes).
    rejects(load((f) => void (f.layers[0].W = Buffer.from(f.layers[0].W, 'base64').subarray(4).toString('base64'))), { argument: 'layers[0].W', expected: '6 float32 values (24 bytes)', actual: '20 bytes' });
    rejects(load((f) => void (f.layers[1].b = Buffer.alloc(12).toString('base64'))), { argument: 'layers[1].b', expected: '2 float32 values (8 bytes)', actual: '12 bytes' });
    rejects(load((f) => void (f.layers[0].gamma = null)), { argument: 'layers[0].gamma', expected: 'a base64 string', actual: 'null' });
    // A float64 file of float32 size: every array is half as long as declared.
    rejects(load((f) => void (f.dtype = 'float64')), { argument: 'layers[0].W', expected: '6 float64 values (48 bytes)', actual: '24 bytes' });
  });

  test('a byte order other than little-endian is rejected, not silently misread (as the reference does)', () => {
    rejects(load((f) => void ((f as { byteOrder: string }).byteOrder = 'big-endian')), { argument: 'byteOrder', expected: "'little-endian'", actual: '"big-endian"' });
  });

  test('a layer entry that is not an object is a CoreArgumentError, not a TypeError', () => {
    rejects(load((f) => void ((f.layers as unknown[])[0] = null)), { argument: 'layers[0]' });
  });
});
