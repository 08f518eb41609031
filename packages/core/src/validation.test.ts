import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { backendInfo, initBackend } from './backend.js';
import { costAndGradients, forward, type Float32Matrix, type Labels } from './api.js';
import { BackendUnavailableError, CoreArgumentError } from './errors.js';
import { predict } from './inference.js';
import { createModel, disposeModel, modelValues, type CoreModel, type CreateModelOptions } from './model.js';
import type { Mode } from './network.js';
import { createMomentumState, disposeMomentumState, trainStep, type MomentumState, type SgdSettings } from './train-step.js';
import type { NetworkConfigInput } from './config.js';
import { availableBackends } from './test-support/backends.js';
import { expectCoreArgumentError, expectCoreArgumentErrorAsync } from './test-support/assertions.js';

// Every public entry point rejects unusable arguments with a CoreArgumentError naming the
// operation, the argument, the expectation and the value; validation never leaks tensors.
// Not numerics, so one backend suffices.
const backends = await availableBackends();

const config = { inputDim: 4, hiddenDims: [3], classes: 3 };
let model: CoreModel;
let state: MomentumState;
const x: Float32Matrix = { rows: 5, cols: 4, data: Float32Array.from({ length: 20 }, (_, i) => Math.sin(i)) };
const labels = [0, 1, 2, 0, 1];
const sgd: SgdSettings = { lambda: 0.01, learningRate: 0.1, momentum: 0.9 };

beforeAll(async () => {
  await initBackend('cpu');
  model = createModel(config, { seed: 1 });
  state = createMomentumState(model);
});

/** The call throws the CoreArgumentError described by `fields`, and frees every tensor it created before throwing. */
function rejects(fn: () => unknown, fields: Parameters<typeof expectCoreArgumentError>[1]): void {
  const before = tf.memory().numTensors;
  expectCoreArgumentError(fn, fields);
  expect(tf.memory().numTensors, 'tensors leaked by the rejected call').toBe(before);
}

const matrix = (rows: number, cols: number, data: ArrayLike<number> = new Float32Array(rows * cols)): Float32Matrix => ({ rows, cols, data: data as Float32Array });

describe('X (forward, costAndGradients, trainStep)', () => {
  const calls: Array<[string, (input: unknown) => unknown]> = [
    ['forward', (input) => forward(model, input as Float32Matrix)],
    ['costAndGradients', (input) => costAndGradients(model, input as Float32Matrix, labels, 0)],
    ['trainStep', (input) => trainStep(model, state, input as Float32Matrix, labels, sgd)],
  ];

  test.each(calls)('%s rejects a Float32Matrix with the wrong number of columns', (op, call) => {
    rejects(() => call(matrix(5, 2)), { op, argument: 'X.cols', expected: '4 (inputDim)', actual: '2' });
  });

  test.each(calls)('%s rejects X.data whose length is not rows × cols', (op, call) => {
    rejects(() => call(matrix(5, 4, new Float32Array(19))), { op, argument: 'X.data', expected: 'length rows*cols = 20', actual: 'length 19' });
  });

  test.each(calls)('%s rejects X.data that is not a Float32Array', (op, call) => {
    rejects(() => call(matrix(5, 4, new Float64Array(20))), { op, argument: 'X.data', expected: 'a Float32Array', actual: 'Float64Array(20)' });
    rejects(() => call(matrix(5, 4, Array.from({ length: 20 }, () => 0))), { op, argument: 'X.data', expected: 'a Float32Array', actual: 'array(20)' });
  });

  test.each(calls)('%s rejects a tensor that is not float32, not rank 2, or has the wrong width', (op, call) => {
    const int = tf.zeros([5, 4], 'int32');
    const rank1 = tf.zeros([4]);
    const narrow = tf.zeros([5, 3]);
    try {
      rejects(() => call(int), { op, argument: 'X', expected: 'dtype float32', actual: 'int32' });
      rejects(() => call(rank1), { op, argument: 'X', expected: 'a rank-2 tensor [n, 4]', actual: 'tensor float32[4]' });
      rejects(() => call(narrow), { op, argument: 'X', expected: 'a rank-2 tensor [n, 4]', actual: 'tensor float32[5,3]' });
      expect([int, rank1, narrow].every((t) => !t.isDisposed)).toBe(true);
    } finally {
      tf.dispose([int, rank1, narrow]);
    }
  });

  test.each(calls)('%s rejects 1 row in training mode with batch norm (batch variance of 1 row is 0)', (op, call) => {
    rejects(() => call(matrix(1, 4)), { op, argument: 'X', expected: 'at least 2 rows in training mode with batch norm', actual: '1 row' });
  });

  test.each(calls)('%s rejects a non-integer row count (naming it, not the data length)', (op, call) => {
    // rows 2.5 × cols 4 = 10 = data length: the length check alone reads "must be length 10, got length 10".
    rejects(() => call(matrix(2.5, 4, new Float32Array(10))), { op, argument: 'X.rows', expected: 'a non-negative integer', actual: '2.5' });
  });

  test('one row is accepted in inference mode, without batch norm, and without hidden layers', () => {
    const one = matrix(1, 4, Float32Array.from([0.1, 0.2, 0.3, 0.4]));
    const noBn = createModel({ ...config, batchNorm: false }, { seed: 2 });
    const linear = createModel({ ...config, hiddenDims: [] }, { seed: 3 });
    const noBnState = createMomentumState(noBn);
    try {
      for (const p of [forward(model, one, 'inference'), forward(noBn, one, 'train'), forward(linear, one, 'train')]) {
        expect(p.shape).toEqual([1, 3]);
        p.dispose();
      }
      expect(Number.isFinite(costAndGradients(noBn, one, [2], 0.1).cost)).toBe(true);
      expect(Number.isFinite(costAndGradients(model, one, [2], 0.1, { mode: 'inference' }).cost)).toBe(true);
      expect(trainStep(noBn, noBnState, one, [1], sgd, { returnLoss: true }).loss).toBeGreaterThan(0);
    } finally {
      disposeModel(noBn);
      disposeModel(linear);
      disposeMomentumState(noBnState);
    }
  });

  test('an empty batch is rejected in inference mode too', () => {
    rejects(() => forward(model, matrix(0, 4), 'inference'), { op: 'forward', argument: 'X', expected: 'at least 1 row', actual: '0 rows' });
  });

  test('a mode other than train/inference is rejected', () => {
    rejects(() => forward(model, x, 'eval' as Mode), { op: 'forward', argument: 'mode', expected: "'train' or 'inference'", actual: '"eval"' });
    rejects(() => costAndGradients(model, x, labels, 0, { mode: 'test' as Mode }), { op: 'costAndGradients', argument: 'mode', expected: "'train' or 'inference'", actual: '"test"' });
  });
});

describe('labels (costAndGradients, trainStep, predict)', () => {
  const calls: Array<[string, (y: unknown) => unknown]> = [
    ['costAndGradients', (y) => costAndGradients(model, x, y as Labels, 0)],
    ['trainStep', (y) => trainStep(model, state, x, y as Labels, sgd)],
    ['predict', (y) => predict(model, x, { labels: y as Labels })],
  ];

  test.each(calls)('%s rejects labels of the wrong length', (op, call) => {
    rejects(() => call([0, 1]), { op, argument: 'labels', expected: 'length 5 (rows of X)', actual: 'length 2' });
  });

  test.each(calls)('%s rejects labels out of range, negative, non-integer or NaN, naming the entry', (op, call) => {
    rejects(() => call([0, 3, 2, 0, 1]), { op, argument: 'labels[1]', expected: 'an integer in [0, 2]', actual: '3' });
    rejects(() => call(Int32Array.from([0, 1, -1, 0, 1])), { op, argument: 'labels[2]', expected: 'an integer in [0, 2]', actual: '-1' });
    rejects(() => call([0, 1, 2, 0.5, 1]), { op, argument: 'labels[3]', actual: '0.5' });
    rejects(() => call([0, 1, 2, 0, NaN]), { op, argument: 'labels[4]', actual: 'NaN' });
  });

  test('costAndGradients rejects labels that are not an array', () => {
    rejects(() => costAndGradients(model, x, null as unknown as Labels, 0), { op: 'costAndGradients', argument: 'labels', expected: 'an Int32Array, Uint8Array or number[]', actual: 'null' });
  });
});

describe('λ, η, ρ', () => {
  test.each([[-1, '-1'], [NaN, 'NaN'], [Infinity, 'Infinity'], ['0.1', '"0.1"']])('costAndGradients rejects λ = %s', (lambda, actual) => {
    rejects(() => costAndGradients(model, x, labels, lambda as number), { op: 'costAndGradients', argument: 'lambda', expected: 'a finite number >= 0', actual });
  });

  test.each([
    ['lambda', -0.1, '-0.1'],
    ['learningRate', NaN, 'NaN'],
    ['learningRate', -1, '-1'],
    ['momentum', -0.5, '-0.5'],
    ['momentum', NaN, 'NaN'],
  ] as const)('trainStep rejects settings.%s = %s and leaves the model unchanged', (name, value, actual) => {
    const before = modelValues(model);
    rejects(() => trainStep(model, state, x, labels, { ...sgd, [name]: value }), { op: 'trainStep', argument: `settings.${name}`, expected: 'a finite number >= 0', actual });
    expect(modelValues(model)).toEqual(before);
  });

  test('trainStep rejects missing settings', () => {
    rejects(() => trainStep(model, state, x, labels, null as unknown as SgdSettings), { op: 'trainStep', argument: 'settings', expected: 'an object {lambda, learningRate, momentum}', actual: 'null' });
  });

  test.each([[0.1, '0.1'], ['fast', '"fast"']] as const)('trainStep rejects settings that are not an object (%s), naming settings itself', (value, actual) => {
    rejects(() => trainStep(model, state, x, labels, value as unknown as SgdSettings), { op: 'trainStep', argument: 'settings', expected: 'an object {lambda, learningRate, momentum}', actual });
  });
});

describe('momentum state (createMomentumState use)', () => {
  test.each([['null', null], ['an object without buffers', {}]] as const)('trainStep rejects a state that is %s with a typed error, not a TypeError', (_name, value) => {
    rejects(() => trainStep(model, value as unknown as MomentumState, x, labels, sgd), { op: 'trainStep', argument: 'state', expected: 'momentum buffers for W1 (createMomentumState(model))', actual: 'missing' });
  });

  test('trainStep rejects a state without buffers for some parameter (made for another model)', () => {
    const other = createModel({ ...config, hiddenDims: [] }, { seed: 4 });
    const foreign = createMomentumState(other);
    try {
      rejects(() => trainStep(model, foreign, x, labels, sgd), { op: 'trainStep', argument: 'state', expected: 'momentum buffers for gamma1 (createMomentumState(model))', actual: 'missing' });
    } finally {
      disposeModel(other);
      disposeMomentumState(foreign);
    }
  });

  test('trainStep rejects a state whose buffers have the same names but other shapes, before changing anything', () => {
    // Arrange: hiddenDims [3, 2] vs [3, 4]: W1, b1, γ1, β1 match in shape, W2 does not.
    const target = createModel({ ...config, hiddenDims: [3, 2] }, { seed: 5 });
    const wide = createModel({ ...config, hiddenDims: [3, 4] }, { seed: 6 });
    const targetState = createMomentumState(target);
    const foreign = createMomentumState(wide);
    try {
      const before = modelValues(target);
      const tensors = tf.memory().numTensors;

      // Act
      let caught: unknown;
      try {
        trainStep(target, foreign, x, labels, sgd);
      } catch (error) {
        caught = error;
      }

      // Assert (soft: a partial update and the wrong error type are separate failures)
      expect.soft(modelValues(target), 'the model after the rejected step').toEqual(before);
      expect.soft(caught).toBeInstanceOf(CoreArgumentError);
      expect.soft(caught).toMatchObject({ op: 'trainStep', argument: 'state.velocity.W2', expected: 'shape [3,2]', actual: 'shape [3,4]' });
      expect.soft(tf.memory().numTensors).toBe(tensors);
    } finally {
      for (const m of [target, wide]) disposeModel(m);
      for (const s of [targetState, foreign]) disposeMomentumState(s);
    }
  });
});

describe('config and init (createModel)', () => {
  const create = (c: unknown, options?: CreateModelOptions) => () => createModel(c as NetworkConfigInput, options);

  test.each([
    [null, 'config', 'an object', 'null'],
    [{ ...config, hiddenDims: 3 }, 'config.hiddenDims', 'an array of positive integers', '3'],
    [{ ...config, hiddenDims: [3, 0] }, 'config.hiddenDims[1]', 'a positive integer', '0'],
    [{ ...config, hiddenDims: [2.5] }, 'config.hiddenDims[0]', 'a positive integer', '2.5'],
    [{ ...config, inputDim: 0 }, 'config.inputDim', 'a positive integer', '0'],
    [{ ...config, classes: '3' }, 'config.classes', 'a positive integer', '"3"'],
    [{ ...config, eps: 0 }, 'config.eps', 'a finite number > 0', '0'],
    [{ ...config, eps: -1e-5 }, 'config.eps', 'a finite number > 0', '-0.00001'],
    [{ ...config, eps: NaN }, 'config.eps', 'a finite number > 0', 'NaN'],
    [{ ...config, eps: Infinity }, 'config.eps', 'a finite number > 0', 'Infinity'],
    [{ ...config, batchNorm: 'true' }, 'config.batchNorm', 'a boolean', '"true"'],
    [{ ...config, bnAffine: 1 }, 'config.bnAffine', 'a boolean', '1'],
    [{ ...config, runningAverageKeep: 1.5 }, 'config.runningAverageKeep', 'a number in [0, 1]', '1.5'],
  ])('createModel rejects config %j', (c, argument, expected, actual) => {
    rejects(create(c), { op: 'createModel', argument, expected, actual });
  });

  test.each([
    [{ kind: 'glorot' }, 'init.kind', 'one of he, xavier, normal', '"glorot"'],
    [{ kind: 'normal', sigma: -1 }, 'init.sigma', 'a finite number >= 0', '-1'],
    [{ kind: 'normal', sigma: NaN }, 'init.sigma', 'a finite number >= 0', 'NaN'],
    [{ kind: 'normal' }, 'init.sigma', 'a finite number >= 0', 'undefined'],
  ])('createModel rejects init %j', (init, argument, expected, actual) => {
    rejects(create(config, { init: init as CreateModelOptions['init'] }), { op: 'createModel', argument, expected, actual });
  });

  test('createModel rejects a non-integer seed', () => {
    rejects(create(config, { seed: 1.5 }), { op: 'createModel', argument: 'seed', expected: 'an integer', actual: '1.5' });
  });
});

describe('the model (forward, costAndGradients, trainStep, predict): a hand-built CoreModel is checked layer by layer', () => {
  const calls: Array<[string, (m: CoreModel) => unknown]> = [
    ['forward', (m) => forward(m, x)],
    ['costAndGradients', (m) => costAndGradients(m, x, labels, 0)],
    ['trainStep', (m) => trainStep(m, state, x, labels, sgd)],
    ['predict', (m) => predict(m, x)],
  ];
  const withLayer = (l: number, change: Record<string, unknown>): CoreModel => ({ config: model.config, layers: model.layers.map((layer, i) => (i === l ? { ...layer, ...change } : layer)) as CoreModel['layers'] });

  // Tensors a layer must not hold where they are put below (made once, freed after the describe).
  let odd: Record<'gamma' | 'wide' | 'ints' | 'flat', tf.Variable>;
  beforeAll(() => {
    odd = { gamma: tf.variable(tf.zeros([3])), wide: tf.variable(tf.zeros([4, 5])), ints: tf.variable(tf.zeros([3], 'int32')), flat: tf.variable(tf.zeros([4])) };
  });
  afterAll(() => Object.values(odd).forEach((t) => t.dispose()));
  // [what, layer, key, the tensor put there, expected, actual]; a wide W shares a dimension with [4, 3].
  const layerCases: Array<[string, number, string, () => tf.Variable | null, string, string]> = [
    ['a BN layer with a running mean but no running variance', 0, 'runningVar', () => null, 'a float32 tensor [3]', 'null'],
    ['γ on the output layer, which the config does not have', 1, 'gamma', () => odd.gamma, 'null (the config has no such parameter here)', 'tensor float32[3]'],
    ['a W of [4, 5]', 0, 'W', () => odd.wide, 'a float32 tensor [4,3]', 'tensor float32[4,5]'],
    ['a W of rank 1', 0, 'W', () => odd.flat, 'a float32 tensor [4,3]', 'tensor float32[4]'],
    ['an int32 b', 0, 'b', () => odd.ints, 'a float32 tensor [3]', 'tensor int32[3]'],
  ];

  test.each(calls)('%s refuses a layer that does not hold what its config implies, naming it', (op, call) => {
    for (const [, l, key, tensor, expected, actual] of layerCases)
      rejects(() => call(withLayer(l, { [key]: tensor() })), { op, argument: `model.layers[${l}].${key}`, expected, actual });
  });

  test.each(calls)('%s refuses what is not a CoreModel, and a missing layer', (op, call) => {
    for (const notModel of [null, 7, { layers: model.layers }, { config: model.config, layers: 'layers' }])
      rejects(() => call(notModel as unknown as CoreModel), { op, argument: 'model', expected: 'a CoreModel { config, layers }' });
    rejects(() => call({ config: model.config, layers: [null, model.layers[1]] } as unknown as CoreModel), { op, argument: 'model.layers[0].W', expected: 'a float32 tensor [4,3]', actual: 'undefined' });
  });

  test.each(calls)('%s refuses a model with another number of layers than its config, and a disposed one', (op, call) => {
    rejects(() => call({ config: model.config, layers: model.layers.slice(0, 1) }), { op, argument: 'model.layers', expected: "2 layers (the config's)", actual: '1' });
    const gone = createModel(config, { seed: 2 });
    disposeModel(gone);
    rejects(() => call(gone), { op, argument: 'model.layers[0].W', expected: 'a live tensor', actual: 'a disposed tensor (was the model disposed?)' });
  });
});

describe('predict', () => {
  test('rejects X of the wrong width, length or type, and a bad chunkSize', () => {
    rejects(() => predict(model, matrix(5, 2)), { op: 'predict', argument: 'X.cols', expected: '4 (inputDim)', actual: '2' });
    rejects(() => predict(model, matrix(5, 4, new Float32Array(19))), { op: 'predict', argument: 'X.data', expected: 'length rows*cols = 20', actual: 'length 19' });
    rejects(() => predict(model, matrix(5, 4, new Float64Array(20))), { op: 'predict', argument: 'X.data', expected: 'a Float32Array', actual: 'Float64Array(20)' });
    rejects(() => predict(model, x, { chunkSize: 0 }), { op: 'predict', argument: 'chunkSize', expected: 'a positive integer', actual: '0' });
    rejects(() => predict(model, x, { chunkSize: 1.5 }), { op: 'predict', argument: 'chunkSize', expected: 'a positive integer', actual: '1.5' });
  });

  test('rejects a non-integer row count (as forward does)', () => {
    rejects(() => predict(model, matrix(2.5, 4, new Float32Array(10))), { op: 'predict', argument: 'X.rows', expected: 'a non-negative integer', actual: '2.5' });
  });

  test('rejects an empty set (as forward does) instead of reporting a NaN loss', () => {
    rejects(() => predict(model, matrix(0, 4), { labels: [] }), { op: 'predict', argument: 'X', expected: 'at least 1 row', actual: '0 rows' });
  });
});

describe('initBackend', () => {
  test('rejects an unknown backend name and keeps the current backend', async () => {
    await initBackend('cpu');
    await expectCoreArgumentErrorAsync(() => initBackend('gpu' as 'cpu'), { op: 'initBackend', argument: 'backend', expected: "'auto' or one of tensorflow, wasm, cpu", actual: '"gpu"' });
    expect(tf.getBackend()).toBe('cpu');
    expect(backendInfo()?.name).toBe('cpu');
  });

  test.skipIf(backends.includes('tensorflow'))('a named backend that cannot start throws BackendUnavailableError and keeps the current backend', async () => {
    await initBackend('cpu');
    const error = await initBackend('tensorflow').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect(error).toMatchObject({ backend: 'tensorflow' });
    expect((error as BackendUnavailableError).reason).toMatch(/^tensorflow: /);
    expect(tf.getBackend()).toBe('cpu');
    expect(backendInfo()).toMatchObject({ name: 'cpu', requested: 'cpu' });
  });
});
