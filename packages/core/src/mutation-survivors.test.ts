import { afterEach, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { costAndGradients, forward, type Float32Matrix, type Labels } from './api.js';
import { BACKEND_NAMES, backendInfo, initBackend, type BackendInfo } from './backend.js';
import { resolveConfig, validateInit, type InitScheme, type NetworkConfigInput } from './config.js';
import { BackendUnavailableError, CoreArgumentError } from './errors.js';
import { predict } from './inference.js';
import { createModel, disposeModel, modelFromValues, modelValues, type CoreModel } from './model.js';
import { modelFromWeights, modelToWeights, type WeightsFile } from './weights-format.js';
import { caseData, coreModelOf } from './test-support/arbitraries.js';
import { expectCoreArgumentError } from './test-support/assertions.js';

// Fixed cases written against mutants that survived `pnpm mutation` over api.ts, backend.ts,
// config.ts, errors.ts, inference.ts and weights-format.ts (docs/mutation.md). Each test names
// what it pins; none depends on a random draw. Argument handling and backend selection, not
// numerics, so cpu suffices where a backend is needed.
//
// Every test stands alone: under Stryker's per-test coverage only the tests covering a mutant run,
// so a test may not rely on state left by an earlier one. No backend is started and tfjs-node is
// not tried at load time (a test file that fails while loading counts as no tests in Stryker's runner).

let tensorflowProbe: Promise<string | null> | null = null;
/**
 * The first line of the error that importing the optional @tensorflow/tfjs-node gives here, or
 * null when it loads. Not called before the first test: a failed import of tfjs-node still
 * registers the cpu backend (it loads @tensorflow/tfjs first).
 */
function tensorflowImportFailure(): Promise<string | null> {
  const moduleName = '@tensorflow/tfjs-node';
  tensorflowProbe ??= import(moduleName).then(
    () => null,
    (error: Error) => error.message.split('\n')[0],
  );
  return tensorflowProbe;
}

/** A backend factory that fails the way a broken install does. */
const failingFactory = (): never => {
  throw new Error('planted initialisation failure');
};

/**
 * Runs `body` with `replace(name, factory)`, which swaps the registered factory of wasm or cpu.
 * Afterwards both original factories are registered again (their instances start afresh) and cpu
 * is active, whatever the body did.
 */
async function withReplacedFactories(body: (replace: (name: 'wasm' | 'cpu', factory: () => never) => void) => Promise<void>): Promise<void> {
  const engine = tf.engine();
  const originals = (['wasm', 'cpu'] as const).map((name) => ({ name, ...engine.registryFactory[name] }));
  const replace = (name: 'wasm' | 'cpu', factory: () => never) => {
    tf.removeBackend(name);
    tf.registerBackend(name, factory, originals.find((o) => o.name === name)!.priority);
  };
  try {
    await body(replace);
  } finally {
    for (const { name, factory, priority } of originals) {
      tf.removeBackend(name);
      tf.registerBackend(name, factory, priority);
    }
    await tf.setBackend('cpu');
  }
}

const config = { inputDim: 4, hiddenDims: [3], classes: 3 };
const x: Float32Matrix = { rows: 5, cols: 4, data: Float32Array.from({ length: 20 }, (_, i) => Math.sin(i)) };
const labels = [0, 1, 2, 0, 1];

/** The call throws the CoreArgumentError described by `fields` and leaves no tensor behind. */
function rejects(fn: () => unknown, fields: Parameters<typeof expectCoreArgumentError>[1]): CoreArgumentError {
  const before = tf.memory().numTensors;
  const error = expectCoreArgumentError(fn, fields);
  expect(tf.memory().numTensors, 'tensors leaked by the rejected call').toBe(before);
  return error;
}

describe('initBackend and backendInfo', () => {
  const saved = process.env.BNMLP_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.BNMLP_BACKEND;
    else process.env.BNMLP_BACKEND = saved;
  });

  // Must stay the first test of the file: nothing may have tried @tensorflow/tfjs-node before it.
  test('initBackend(\'cpu\') loads the cpu backend itself', async () => {
    expect(await initBackend('cpu')).toEqual({ name: 'cpu', requested: 'cpu', skipped: [] });
    expect(tf.getBackend()).toBe('cpu');
  });

  test("the 'auto' order is tensorflow, wasm, cpu", () => {
    expect(BACKEND_NAMES).toEqual(['tensorflow', 'wasm', 'cpu']);
  });

  test("initBackend() without BNMLP_BACKEND is 'auto': tensorflow skipped with its loader's error, wasm started", async (ctx) => {
    const failure = await tensorflowImportFailure();
    if (failure === null) ctx.skip();
    // Arrange: the backend chosen last (cpu) made stale, so 'auto' walks the order
    delete process.env.BNMLP_BACKEND;
    await initBackend('wasm');
    await initBackend('cpu');
    await tf.setBackend('wasm');

    // Act
    const info = await initBackend();

    // Assert
    expect(info).toEqual({ name: 'wasm', requested: 'auto', skipped: [{ backend: 'tensorflow', reason: failure }] });
    expect(tf.getBackend()).toBe('wasm');
    expect(backendInfo()).toBe(info);
  });

  test('initBackend() takes the backend from BNMLP_BACKEND', async () => {
    await initBackend('wasm');
    process.env.BNMLP_BACKEND = 'cpu';
    const info = await initBackend();
    expect(info).toEqual({ name: 'cpu', requested: 'cpu', skipped: [] });
    expect(tf.getBackend()).toBe('cpu');
  });

  test("a second request for the active backend, or 'auto', returns the same info without starting anything", async () => {
    // Arrange
    await initBackend('wasm');
    const cpu = await initBackend('cpu');
    expect(cpu).toEqual({ name: 'cpu', requested: 'cpu', skipped: [] });

    // Act
    const again = await initBackend('cpu');
    const auto = await initBackend('auto');

    // Assert: 'auto' keeps the backend chosen before instead of walking the order (which would start wasm)
    expect(again).toBe(cpu);
    expect(auto).toBe(cpu);
    expect(tf.getBackend()).toBe('cpu');
    expect(backendInfo()).toBe(cpu);
  });

  test('a backend switched behind its back: backendInfo() is null and initBackend switches back', async () => {
    // Arrange
    await initBackend('wasm');
    const cpu = await initBackend('cpu');
    await tf.setBackend('wasm');

    // Act + Assert
    expect(backendInfo()).toBeNull();
    const back = await initBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(back).not.toBe(cpu);
    expect(back).toEqual({ name: 'cpu', requested: 'cpu', skipped: [] });
    expect(backendInfo()).toBe(back);
  });

  test('BackendUnavailableError names the backend and the loader error', async (ctx) => {
    const failure = await tensorflowImportFailure();
    if (failure === null) ctx.skip();
    await initBackend('cpu');
    const error = await initBackend('tensorflow').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    const { name, backend, reason, message } = error as BackendUnavailableError;
    expect({ name, backend, reason, message }).toEqual({
      name: 'BackendUnavailableError',
      backend: 'tensorflow',
      reason: `tensorflow: ${failure}`,
      message: `backend 'tensorflow' is unavailable: tensorflow: ${failure}`,
    });
  });

  test('a backend made active with tf.setBackend (not through initBackend) stays active after a failed initBackend(name)', async () => {
    // Arrange: cpu chosen through initBackend, then wasm switched on behind its back (and working).
    await initBackend('wasm');
    await initBackend('cpu');
    await tf.setBackend('wasm');
    await withReplacedFactories(async (replace) => {
      replace('cpu', failingFactory);

      // Act
      const error = await initBackend('cpu').catch((e: unknown) => e);

      // Assert: the failed name is not left active with nothing behind it, nor is the stale cpu
      // choice brought back; the backend that worked before the call is active and computes.
      expect(error).toMatchObject({ backend: 'cpu', reason: 'cpu: tf.setBackend returned false' });
      expect(tf.getBackend()).toBe('wasm');
      expect(tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0]).toBe(3);
    });
    expect((await initBackend('cpu')).name).toBe('cpu');
  });

  test('a backend whose initialisation failed before the call is not started again by a failed initBackend(name)', async () => {
    // Arrange: wasm and cpu both fail to initialise; the caller's tf.setBackend('wasm') failed, so
    // tfjs names wasm active with nothing behind it.
    await initBackend('wasm');
    await initBackend('cpu');
    let wasmStarts = 0;
    await withReplacedFactories(async (replace) => {
      replace('wasm', () => {
        wasmStarts++;
        return failingFactory();
      });
      replace('cpu', failingFactory);
      expect(await tf.setBackend('wasm')).toBe(false);
      expect(wasmStarts).toBe(1);

      // Act
      const error = await initBackend('cpu').catch((e: unknown) => e);

      // Assert: nothing was working before the call, so there is nothing to restore.
      expect(error).toMatchObject({ backend: 'cpu' });
      expect(wasmStarts).toBe(1);
    });
    expect((await initBackend('cpu')).name).toBe('cpu');
  });

  test("a registered backend whose initialisation fails: 'tf.setBackend returned false', and every failure of 'auto' listed", async (ctx) => {
    const failure = await tensorflowImportFailure();
    if (failure === null) ctx.skip();
    // Arrange: wasm and cpu registered (and cpu active), then both factories replaced by ones that throw.
    await initBackend('wasm');
    await initBackend('cpu');
    await withReplacedFactories(async (replace) => {
      replace('wasm', failingFactory);

      // Act + Assert: one named backend
      const wasm = await initBackend('wasm').catch((e: unknown) => e);
      expect(wasm).toBeInstanceOf(BackendUnavailableError);
      expect(wasm).toMatchObject({ backend: 'wasm', reason: 'wasm: tf.setBackend returned false' });
      // The backend that worked before the call is still the active one, not a name with nothing behind it.
      expect(tf.getBackend()).toBe('cpu');
      expect(backendInfo()).toMatchObject({ name: 'cpu' });
      expect(tf.add(tf.scalar(1), tf.scalar(2)).dataSync()[0]).toBe(3);

      // Act + Assert: 'auto' with every backend failing (cpu removed too, so the cpu info is stale)
      replace('cpu', failingFactory);
      const auto = await initBackend('auto').catch((e: unknown) => e);
      expect(auto).toBeInstanceOf(BackendUnavailableError);
      expect(auto).toMatchObject({
        backend: 'cpu',
        reason: `tensorflow: ${failure}; wasm: tf.setBackend returned false; cpu: tf.setBackend returned false`,
      });
    });
    const restored: BackendInfo = await initBackend('cpu');
    expect(restored.name).toBe('cpu');
  });
});

describe('forward and costAndGradients arguments', () => {
  let model: CoreModel;
  beforeAll(async () => {
    await initBackend('cpu');
    model = createModel(config, { seed: 1 });
  });

  test('X missing altogether is a CoreArgumentError naming X.data, not a TypeError', () => {
    const error = rejects(() => forward(model, null as unknown as Float32Matrix), { op: 'forward', argument: 'X.data', expected: 'a Float32Array', actual: 'undefined' });
    expect(error.name).toBe('CoreArgumentError');
  });

  test('a negative row count is named as such (not as a data length mismatch)', () => {
    rejects(() => forward(model, { rows: -1, cols: 4, data: new Float32Array(0) }), { op: 'forward', argument: 'X.rows', expected: 'a non-negative integer', actual: '-1' });
  });

  test('a rank-3 tensor whose second dimension matches inputDim is rejected', () => {
    const x3 = tf.zeros([5, 4, 1]);
    try {
      rejects(() => forward(model, x3 as unknown as tf.Tensor2D), { op: 'forward', argument: 'X', expected: 'a rank-2 tensor [n, 4]', actual: 'tensor float32[5,4,1]' });
    } finally {
      x3.dispose();
    }
  });

  test('X.data that only looks like a tensor is described by its shape', () => {
    const data = { shape: [5, 4] } as unknown as Float32Array;
    rejects(() => forward(model, { rows: 5, cols: 4, data }), { op: 'forward', argument: 'X.data', expected: 'a Float32Array', actual: 'tensor [5,4]' });
  });

  test('labels without a length are rejected as labels, not as a length mismatch', () => {
    rejects(() => costAndGradients(model, x, {} as unknown as Labels, 0), { op: 'costAndGradients', argument: 'labels', expected: 'an Int32Array, Uint8Array or number[]', actual: 'object' });
  });

  test('∂J/∂X only when asked for', () => {
    expect(costAndGradients(model, x, labels, 0).inputGradient).toBeNull();
    expect(costAndGradients(model, x, labels, 0, { inputGradient: false }).inputGradient).toBeNull();
    const withInput = costAndGradients(model, x, labels, 0, { inputGradient: true }).inputGradient;
    expect(withInput).toBeInstanceOf(Float32Array);
    expect(withInput!.length).toBe(x.rows * x.cols);
  });
});

describe('config and init', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });
  const create = (c: unknown, options: { init?: InitScheme } = {}) => () => createModel(c as NetworkConfigInput, { seed: 3, ...options });

  test('a config that is not an object is named as config', () => {
    rejects(create(5), { op: 'createModel', argument: 'config', expected: 'an object', actual: '5' });
    rejects(create('4-3-3'), { op: 'createModel', argument: 'config', expected: 'an object', actual: '"4-3-3"' });
  });

  test('booleans and bigints are described by their value', () => {
    rejects(create({ ...config, inputDim: true }), { op: 'createModel', argument: 'config.inputDim', expected: 'a positive integer', actual: 'true' });
    rejects(create({ ...config, classes: 3n }), { op: 'createModel', argument: 'config.classes', expected: 'a positive integer', actual: '3' });
  });

  test('runningAverageKeep: 0 and 1 are accepted, below 0 rejected', () => {
    for (const keep of [0, 1]) {
      const model = createModel({ ...config, runningAverageKeep: keep });
      expect(model.config.runningAverageKeep).toBe(keep);
      disposeModel(model);
    }
    rejects(create({ ...config, runningAverageKeep: -0.1 }), { op: 'createModel', argument: 'config.runningAverageKeep', expected: 'a number in [0, 1]', actual: '-0.1' });
  });

  test('init normal with σ = 0 is accepted and gives zero weights', () => {
    const model = createModel(config, { init: { kind: 'normal', sigma: 0 }, seed: 3 });
    try {
      for (const layer of modelValues(model)) expect(layer.W.every((w) => w === 0)).toBe(true);
    } finally {
      disposeModel(model);
    }
  });

  test('validateInit without a scheme is a CoreArgumentError, not a TypeError', () => {
    for (const init of [null, undefined]) {
      expectCoreArgumentError(() => validateInit('createModel', init as unknown as InitScheme), { op: 'createModel', argument: 'init.kind', expected: 'one of he, xavier, normal', actual: 'undefined' });
    }
  });
});

describe('predict: ties and accuracy', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  test('exactly tied logits predict the first tied class; accuracy and loss are exact', () => {
    // Arrange: softmax regression with W = 0, so every row's logits are b = [−1, 2, 2, 0] exactly.
    const modelConfig = resolveConfig('test', { inputDim: 2, hiddenDims: [], classes: 4 });
    const model = modelFromValues(modelConfig, [{ W: new Float32Array(8), b: Float32Array.from([-1, 2, 2, 0]), gamma: null, beta: null, runningMean: null, runningVar: null }]);
    const rows: Float32Matrix = { rows: 3, cols: 2, data: Float32Array.from([0.5, -1, 2, 3, -4, 0.25]) };
    try {
      for (const chunkSize of [1000, 2]) {
        // Act
        const result = predict(model, rows, { labels: [1, 2, 1], chunkSize });

        // Assert
        expect(Array.from(result.predictions)).toEqual([1, 1, 1]);
        expect(result.accuracy).toBe(2 / 3);
        const z = Math.exp(-1) + 2 * Math.exp(2) + 1;
        expect(result.loss).toBeCloseTo(-(2 - Math.log(z)), 6);
        expect(result.probabilities[1]).toBe(result.probabilities[2]);
      }
    } finally {
      disposeModel(model);
    }
  });
});

describe('weights files', () => {
  beforeAll(async () => {
    await initBackend('cpu');
  });

  test('a BN + γ/β model round-trips every array (fixed case, not a lucky draw)', () => {
    const model = coreModelOf(caseData({ inputDim: 3, hiddenDims: [4, 2], classes: 3, batch: 2, batchNorm: true, bnAffine: true, lambda: 0, seed: 5 }));
    const loaded = modelFromWeights(JSON.stringify(modelToWeights(model)));
    try {
      const values = modelValues(loaded);
      expect(values).toEqual(modelValues(model));
      expect(values.slice(0, 2).every((layer) => layer.gamma && layer.beta && layer.runningMean && layer.runningVar)).toBe(true);
    } finally {
      disposeModel(model);
      disposeModel(loaded);
    }
  });

  test('null (object or JSON text) is rejected as the file', () => {
    for (const file of [null, 'null']) {
      rejects(() => modelFromWeights(file as unknown as WeightsFile), { op: 'modelFromWeights', argument: 'file', expected: 'a weights object', actual: 'null' });
    }
  });

  test('a layer entry that is a number is rejected as the entry', () => {
    const source = createModel({ inputDim: 3, hiddenDims: [2], classes: 2 }, { seed: 1 });
    const file = modelToWeights(source);
    disposeModel(source);
    (file.layers as unknown[])[0] = 5;
    rejects(() => modelFromWeights(file), { op: 'modelFromWeights', argument: 'layers[0]', expected: 'an object of base64 arrays', actual: '5' });
  });
});
