import { readCifarDirectory, preprocessCifar } from '../cifar.js';
import type { PreparedData } from '../dataset.js';
import { parseTrainConfig, type TrainConfig, type TrainConfigInput } from '../train-config.js';
import { tinyCifarDir } from './paths.js';

/**
 * The generated tiny fixture as prepared data (first `dims` features): 30 training rows, 10
 * validation rows held out from the end of data_batch_1, the 20 test rows.
 */
export function tinyData(dims = 40): PreparedData {
  const dataset = readCifarDirectory(tinyCifarDir);
  const slice = (start: number, end: number) => ({
    count: end - start,
    pixels: dataset.train.pixels.subarray(start * 3072, end * 3072),
    labels: dataset.train.labels.subarray(start, end),
    sources: dataset.train.sources,
  });
  const { stats, train, others } = preprocessCifar(slice(0, 30), [slice(30, 40), dataset.test!], { dims });
  return {
    train: { x: train, labels: slice(0, 30).labels.slice() },
    validation: { x: others[0], labels: slice(30, 40).labels.slice() },
    test: { x: others[1], labels: dataset.test!.labels.slice() },
    stats,
    classNames: dataset.classNames,
    source: { dir: tinyCifarDir, format: 'binary', files: [] },
    flip: null,
    notes: [],
  };
}

/** A small, fast config for the tiny data: [12, 8] with BN, batch 8 (30 rows: a last batch of 6). */
export function tinyConfig(overrides: Partial<TrainConfigInput> = {}, dims = 40): TrainConfig {
  return parseTrainConfig({
    network: { hiddenDims: [12, 8] },
    optimizer: { learningRate: 0.05, momentum: 0.8, lambda: 0.001, schedule: { kind: 'step-decay', decay: 0.95 } },
    epochs: 4,
    batchSize: 8,
    seed: 3,
    data: { dims, validationCount: 10 },
    ...overrides,
  });
}
