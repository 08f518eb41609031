import { disposeModel } from '@bnmlp/core';
import { prepareData } from './dataset.js';
import { parseTrainConfig, type TrainConfigInput } from './train-config.js';
import { trainNetwork, type EpochRecord, type TrainNetworkOptions } from './training.js';

export interface OverfitResult {
  /** Training accuracy after the last epoch (inference mode). */
  readonly trainAccuracy: number;
  readonly trainCost: number;
  readonly images: number;
  readonly history: readonly EpochRecord[];
}

/**
 * The sanity check of the model report: train on the first `images` training images only (no
 * validation, no test) for many epochs. A correct network and update drive the training accuracy
 * to (nearly) 100%; one that cannot has a bug in its gradients or its step.
 */
export async function overfitCheck(
  configInput: TrainConfigInput, dataDir: string, options: { images?: number; epochs?: number } & Pick<TrainNetworkOptions, 'signal' | 'onEvent'> = {},
): Promise<OverfitResult> {
  const images = options.images ?? 100;
  const base = parseTrainConfig(configInput);
  const config = parseTrainConfig({ ...base, epochs: options.epochs ?? base.epochs, data: { ...base.data, trainCount: images, validationCount: 0, validationFiles: [], test: false } });
  const data = prepareData(config.data, dataDir, config.seed);
  const outcome = await trainNetwork(config, data, { signal: options.signal, onEvent: options.onEvent });
  disposeModel(outcome.model);
  const last = outcome.history[outcome.history.length - 1];
  return { trainAccuracy: last?.train.accuracy ?? Number.NaN, trainCost: last?.train.cost ?? Number.NaN, images: data.train.x.rows, history: outcome.history };
}
