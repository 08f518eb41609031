import { backendInfo, configureKernelThreads, disposeModel, initBackend, modelValues, type LayerValues } from '@bnmlp/core';
import { beforeAll, describe, expect, test } from 'vitest';
import type { TrainingState } from './checkpoint.js';
import { recomputePopulationStatistics } from './precise-bn.js';
import { tinyConfig, tinyData } from './test-support/tiny-data.js';
import { trainNetwork, type EpochRecord, type TrainingEvent } from './training.js';

beforeAll(async () => {
  await initBackend();
});

/** History without wall times (the only part that is not reproducible). */
function reproducible(history: readonly EpochRecord[]) {
  return history.map(({ seconds: _seconds, stepSeconds: _stepSeconds, ...rest }) => rest);
}

async function trainToEnd(config = tinyConfig(), data = tinyData()) {
  const outcome = await trainNetwork(config, data);
  const weights = modelValues(outcome.model);
  disposeModel(outcome.model);
  return { outcome, weights };
}

function expectSameWeights(a: readonly LayerValues[], b: readonly LayerValues[]) {
  expect(a.length).toBe(b.length);
  a.forEach((layer, l) => {
    for (const key of ['W', 'b', 'gamma', 'beta', 'runningMean', 'runningVar'] as const) {
      // Bit-identical: compare the raw bytes, so -0 vs 0 or a NaN payload would show too.
      const x = layer[key];
      const y = b[l][key];
      expect(x === null, `${key}${l + 1} presence`).toBe(y === null);
      if (x && y) expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength)), `${key}${l + 1}`).toBe(true);
    }
  });
}

describe('trainNetwork', () => {
  test('learns the tiny fixture: training cost falls and accuracy rises above chance', async () => {
    const { outcome } = await trainToEnd(tinyConfig({ epochs: 15 }));
    const { history } = outcome;
    expect(outcome.status).toBe('completed');
    expect(history).toHaveLength(15);
    expect(history[14].train.cost).toBeLessThan(history[0].train.cost);
    expect(history[14].train.accuracy).toBeGreaterThan(0.5);
    expect(outcome.summary.test).not.toBeNull();
    // The cost includes λΣ‖W‖² on top of the loss.
    expect(history[0].train.cost).toBeGreaterThan(history[0].train.loss);
    // η decays once per epoch.
    expect(history[1].learningRate).toBeCloseTo(0.05 * 0.95, 12);
  });

  test('the same seed and config give a bit-identical history and weights; another seed does not', async () => {
    const a = await trainToEnd();
    const b = await trainToEnd();
    const c = await trainToEnd(tinyConfig({ seed: 4 }));
    expect(reproducible(b.outcome.history)).toEqual(reproducible(a.outcome.history));
    expectSameWeights(b.weights, a.weights);
    expect(reproducible(c.outcome.history)).not.toEqual(reproducible(a.outcome.history));
  });

  test.each([
    ['at an epoch boundary', 2, 1],
    ['mid-epoch', 2, 3],
    ['at the first step', 1, 1],
  ])('a run stopped %s and resumed from its state ends bit-identical to an uninterrupted run', async (_name, stopEpoch, stopStep) => {
    const config = tinyConfig({ network: { hiddenDims: [12, 8] }, data: { dims: 40, validationCount: 10, flip: true } });
    const data = { ...tinyData(), flip: null };
    const { flipTransform } = await import('./flip.js');
    const withFlip = { ...data, flip: flipTransform(data.stats) };
    const straight = await trainToEnd(config, withFlip);

    // Stop when step `stopStep` of epoch `stopEpoch` is about to run.
    const controller = new AbortController();
    const checkpoints: TrainingState[] = [];
    const onEvent = (e: TrainingEvent) => {
      const atBoundary = stopStep === 1 && ((e.kind === 'epoch-end' && e.record.epoch === stopEpoch - 1) || (e.kind === 'start' && stopEpoch === 1));
      const reached = atBoundary || (e.kind === 'step' && e.epoch === stopEpoch && e.step === stopStep - 1);
      if (reached) controller.abort();
    };
    const first = await trainNetwork(config, withFlip, { signal: controller.signal, onEvent, onCheckpoint: (s) => checkpoints.push(s) });
    disposeModel(first.model);
    expect(first.status).toBe('aborted');
    const last = checkpoints[checkpoints.length - 1];
    expect({ epoch: last.epoch, step: last.step }).toEqual({ epoch: stopEpoch - 1, step: stopStep - 1 });
    expect(first.state).toEqual(last);

    const resumed = await trainNetwork(config, withFlip, { resume: last });
    const weights = modelValues(resumed.model);
    disposeModel(resumed.model);
    expect(resumed.status).toBe('completed');
    expect(reproducible(resumed.history)).toEqual(reproducible(straight.outcome.history));
    expectSameWeights(weights, straight.weights);
  });

  test('on wasm, 1 and 2 kernel threads give a bit-identical history and weights (fixed partition, each entry summed in one order)', async () => {
    const previous = backendInfo()!.name;
    await initBackend('wasm');
    try {
      configureKernelThreads(1);
      const one = await trainToEnd(tinyConfig({ epochs: 4 }));
      // minWork 0: every dense product of the tiny network runs on both threads.
      expect(configureKernelThreads(2, { minWork: 0, adaptive: false })).toMatchObject({ threads: 2, threadsReason: null });
      const two = await trainToEnd(tinyConfig({ epochs: 4 }));
      expect(reproducible(two.outcome.history)).toEqual(reproducible(one.outcome.history));
      expectSameWeights(two.weights, one.weights);
    } finally {
      configureKernelThreads('auto', { minWork: 1 << 20, adaptive: true });
      await initBackend(previous);
    }
  });

  test('a diverging run stops at the step whose loss is not finite, names it, and never checkpoints the diverged state', async () => {
    const config = tinyConfig({ network: { hiddenDims: [12], batchNorm: false }, optimizer: { learningRate: 1e4, momentum: 0.9, lambda: 0 }, epochs: 5 });
    const checkpoints: TrainingState[] = [];
    const outcome = await trainNetwork(config, tinyData(), { onCheckpoint: (s) => checkpoints.push(s) });
    disposeModel(outcome.model);
    expect(outcome.status).toBe('diverged');
    const divergence = outcome.summary.divergence!;
    expect(divergence.message).toMatch(/epoch \d+/);
    expect(divergence.step).toBeGreaterThanOrEqual(1);
    expect(divergence.lastGoodEpoch).toBe(checkpoints.length);
    expect(outcome.history).toHaveLength(checkpoints.length);
    for (const state of checkpoints) for (const layer of state.layers) expect(layer.W.every(Number.isFinite)).toBe(true);
  });

  test('any batch size: the last, smaller batch is trained on; a last batch of one row under BN is dropped and said', async () => {
    const steps: number[] = [];
    const notes: string[] = [];
    // 30 training rows: batch 8 leaves 6 (kept), batch 29 leaves 1 (dropped under BN).
    const kept = await trainNetwork(tinyConfig({ epochs: 1, batchSize: 8 }), tinyData(), { onEvent: (e) => e.kind === 'step' && steps.push(e.step) });
    disposeModel(kept.model);
    expect(steps).toEqual([1, 2, 3, 4]);
    expect(kept.summary.droppedRows).toBe(0);
    const dropped = await trainNetwork(tinyConfig({ epochs: 1, batchSize: 29 }), tinyData(), { onEvent: (e) => e.kind === 'note' && notes.push(e.message) });
    disposeModel(dropped.model);
    expect(dropped.history[0].steps).toBe(1);
    expect(dropped.summary.droppedRows).toBe(1);
    expect(notes.join('\n')).toMatch(/1 row under batch norm.*dropped/);
  });

  test('the cyclical schedule runs 2·n_s·cycles steps, η rising and falling between η_min and η_max', async () => {
    const rates: number[] = [];
    const config = tinyConfig({ optimizer: { learningRate: 0, schedule: { kind: 'cyclical', etaMin: 1e-3, etaMax: 1e-1, stepSize: 5, cycles: 2 } } });
    const outcome = await trainNetwork(config, tinyData(), { onEvent: (e) => e.kind === 'epoch-start' && rates.push(e.learningRate) });
    disposeModel(outcome.model);
    expect(outcome.summary.steps).toBe(20);
    expect(outcome.history.reduce((n, r) => n + r.steps, 0)).toBe(20);
    expect(rates[0]).toBeCloseTo(1e-3, 12);
    expect(Math.max(...outcome.history.map((r) => r.learningRate))).toBeLessThanOrEqual(0.1);
  });
});

describe('recomputePopulationStatistics (precise BN)', () => {
  test("sets layer 1's running averages to the float64 population mean and biased variance of its scores", async () => {
    const data = tinyData();
    const { outcome } = { outcome: await trainNetwork(tinyConfig({ epochs: 2 }), data) };
    recomputePopulationStatistics(outcome.model, data.train.x, 7);
    const [layer] = modelValues(outcome.model);
    disposeModel(outcome.model);
    const { rows, cols, data: x } = data.train.x;
    const width = layer.b.length;
    for (let j = 0; j < width; j++) {
      const scores = Array.from({ length: rows }, (_, i) => {
        let s = layer.b[j];
        for (let k = 0; k < cols; k++) s += x[i * cols + k] * layer.W[k * width + j];
        return s;
      });
      const mean = scores.reduce((a, b) => a + b, 0) / rows;
      const variance = scores.reduce((a, s) => a + (s - mean) ** 2, 0) / rows;
      expect(layer.runningMean![j]).toBeCloseTo(mean, 4);
      expect(layer.runningVar![j] / variance).toBeCloseTo(1, 4);
    }
  });
});

describe('overfitCheck', () => {
  test('drives the training accuracy on a few images to 100% (the report sanity check)', async () => {
    const { overfitCheck } = await import('./overfit.js');
    const { tinyCifarDir } = await import('./test-support/paths.js');
    const result = await overfitCheck({ network: { hiddenDims: [20] }, optimizer: { learningRate: 0.05 }, batchSize: 10, data: { dims: 200 } }, tinyCifarDir, { images: 20, epochs: 60 });
    expect(result.images).toBe(20);
    expect(result.history).toHaveLength(60);
    expect(result.trainAccuracy).toBe(1);
    expect(result.history[59].validation).toBeNull();
  });
});
