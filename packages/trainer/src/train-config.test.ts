import { describe, expect, test } from 'vitest';
import { learningRateAt, parseTrainConfig, plannedEpochs, TrainConfigError } from './train-config.js';

const minimal = { network: { hiddenDims: [50, 30] }, optimizer: { learningRate: 0.01 } };

describe('parseTrainConfig', () => {
  test('fills in the documented defaults', () => {
    const config = parseTrainConfig(minimal);
    expect(config).toMatchObject({
      version: 1, epochs: 20, batchSize: 100, seed: 0, preciseBn: false,
      network: { batchNorm: true, bnAffine: true, eps: 1e-5, runningAverageKeep: 0.9, init: { kind: 'he' } },
      optimizer: { momentum: 0.8, lambda: 0, schedule: { kind: 'step-decay', decay: 1 } },
      data: { dir: null, trainFiles: null, validationFiles: [], validationCount: 0, trainCount: null, selection: 'first', test: true, dims: 3072, flip: false },
    });
  });

  test.each([
    [{ ...minimal, optimizer: { learningRate: -1 } }, 'optimizer.learningRate'],
    [{ ...minimal, batchSize: 0 }, 'batchSize'],
    [{ ...minimal, network: { hiddenDims: [50, 2.5] } }, 'network.hiddenDims.1'],
    [{ ...minimal, optimizer: { learningRate: 0.1, lambda: Number.POSITIVE_INFINITY } }, 'optimizer.lambda'],
    [{ ...minimal, epochz: 3 }, '(top level)'],
    [{ ...minimal, data: { validationFiles: ['data_batch_5'], validationCount: 10 } }, 'data.validationCount'],
    [{ ...minimal, optimizer: { learningRate: 0, schedule: { kind: 'cyclical', etaMin: 0.1, etaMax: 0.01, stepSize: 5, cycles: 1 } } }, 'optimizer.schedule.etaMin'],
    [{ ...minimal, data: { trainFiles: ['../etc/passwd'] } }, 'data.trainFiles.0'],
  ])('names the offending key: %#', (input, key) => {
    let error: unknown;
    try {
      parseTrainConfig(input, 'my.yaml');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TrainConfigError);
    expect((error as TrainConfigError).issues.map((i) => i.path || '(top level)')).toContain(key);
    expect((error as Error).message).toMatch(/^my\.yaml: invalid training config/);
  });
});

describe('learning-rate schedules', () => {
  test('step decay: η₀·decay^epoch', () => {
    const config = parseTrainConfig({ ...minimal, optimizer: { learningRate: 0.012721, schedule: { kind: 'step-decay', decay: 0.99 } } });
    expect(learningRateAt(config, 0, 0)).toBe(0.012721);
    expect(learningRateAt(config, 3, 999)).toBeCloseTo(0.012721 * 0.99 ** 3, 15);
  });

  test('cyclical: triangular between η_min and η_max with half-cycle n_s, and the epochs it needs', () => {
    const config = parseTrainConfig({ ...minimal, optimizer: { learningRate: 0, schedule: { kind: 'cyclical', etaMin: 1e-5, etaMax: 1e-1, stepSize: 500, cycles: 2 } } });
    expect(learningRateAt(config, 0, 0)).toBe(1e-5);
    expect(learningRateAt(config, 0, 250)).toBeCloseTo((1e-5 + 1e-1) / 2, 15);
    expect(learningRateAt(config, 0, 500)).toBeCloseTo(1e-1, 15);
    expect(learningRateAt(config, 0, 750)).toBeCloseTo((1e-5 + 1e-1) / 2, 15);
    expect(learningRateAt(config, 0, 1000)).toBe(1e-5);
    expect(plannedEpochs(config, 450)).toBe(5);
  });
});
