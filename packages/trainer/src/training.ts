import {
  backendInfo, createModel, createMomentumState, disposeModel, disposeMomentumState, initBackend, modelFromValues, modelValues, resolveConfig, tf, trainStep,
  type CoreModel, type MomentumState, type NetworkConfigInput,
} from '@bnmlp/core';
import type { TrainingState } from './checkpoint.js';
import { CIFAR_CLASSES } from './cifar.js';
import type { PreparedData } from './dataset.js';
import { TrainerArgumentError } from './errors.js';
import { evaluateSplit, l2Penalty, type SplitMetrics } from './evaluation.js';
import { MiniBatcher } from './mini-batches.js';
import { recomputePopulationStatistics } from './precise-bn.js';
import { learningRateAt, plannedEpochs, plannedSteps, type TrainConfig } from './train-config.js';

/*
The training loop: mini-batch SGD with momentum (v = ρv + η∇J, θ −= v, @bnmlp/core's trainStep),
η by the config's schedule, the batcher reshuffled every epoch, inference-mode evaluation of the
training and validation splits after every epoch. Seeded throughout: the same config and seed give
the same bits on the same backend, and so does a run stopped at any step boundary and resumed
from its checkpoint (TrainingState).
*/

export interface EpochRecord {
  /** 1-based. */
  readonly epoch: number;
  /** η of the epoch's first step. */
  readonly learningRate: number;
  readonly steps: number;
  readonly train: SplitMetrics;
  readonly validation: SplitMetrics | null;
  /** Wall time of the epoch's steps and evaluation (not part of the reproducible state). */
  readonly seconds: number;
  /** Wall time of the steps alone (batch gather and train steps), for benchmarks. */
  readonly stepSeconds: number;
}

export type RunStatus = 'completed' | 'aborted' | 'diverged';

export interface RunSummary {
  readonly status: RunStatus;
  readonly epochs: number;
  readonly steps: number;
  readonly train: SplitMetrics | null;
  readonly validation: SplitMetrics | null;
  readonly test: SplitMetrics | null;
  /** The epoch with the best validation accuracy (1-based), when there is a validation split. */
  readonly bestValidationEpoch: number | null;
  readonly seconds: number;
  readonly backend: string;
  /** Rows per epoch left out (a last batch of 1 row under BN). */
  readonly droppedRows: number;
  readonly divergence: Divergence | null;
  readonly notes: readonly string[];
}

export interface Divergence {
  /** 1-based epoch and step where the cost or a parameter stopped being finite. */
  readonly epoch: number;
  readonly step: number;
  readonly message: string;
  /** The last epoch whose state was checkpointed (0: none), i.e. the state a resume would start from. */
  readonly lastGoodEpoch: number;
}

export type TrainingEvent =
  | { readonly kind: 'start'; readonly epochs: number; readonly stepsPerEpoch: number; readonly totalSteps: number; readonly resumedAt: { epoch: number; step: number } | null }
  | { readonly kind: 'epoch-start'; readonly epoch: number; readonly epochs: number; readonly learningRate: number }
  | { readonly kind: 'step'; readonly epoch: number; readonly step: number; readonly stepsPerEpoch: number; readonly globalStep: number; readonly totalSteps: number; readonly loss: number }
  | { readonly kind: 'epoch-end'; readonly record: EpochRecord; readonly epochs: number }
  | { readonly kind: 'note'; readonly message: string };

export interface TrainNetworkOptions {
  /** Stops at the next step boundary; the outcome is 'aborted' with the state to resume from. */
  readonly signal?: AbortSignal;
  readonly onEvent?: (event: TrainingEvent) => void;
  /** Continue from this state (a checkpoint of the same config). */
  readonly resume?: TrainingState;
  /** Called with the state after every epoch and on abort (write a checkpoint here); never with a diverged state. */
  readonly onCheckpoint?: (state: TrainingState) => void;
}

export interface TrainingOutcome {
  readonly status: RunStatus;
  /** The trained model (the caller disposes it with disposeModel). After divergence, the diverged model. */
  readonly model: CoreModel;
  readonly history: readonly EpochRecord[];
  readonly summary: RunSummary;
  /** The state at the end (completed or aborted runs). */
  readonly state: TrainingState | null;
}

/** Yield to the event loop at most this often, so an AbortSignal (Ctrl-C) can fire mid-epoch. */
const YIELD_EVERY_MS = 25;

export function networkConfigOf(config: TrainConfig): NetworkConfigInput {
  const { network, data } = config;
  return {
    inputDim: data.dims,
    hiddenDims: network.hiddenDims,
    classes: CIFAR_CLASSES,
    batchNorm: network.batchNorm,
    bnAffine: network.bnAffine,
    eps: network.eps,
    runningAverageKeep: network.runningAverageKeep,
  };
}

function captureState(model: CoreModel, momentum: MomentumState, batcher: MiniBatcher, position: { epoch: number; step: number; globalStep: number }, history: readonly EpochRecord[], elapsedSeconds: number): TrainingState {
  const velocity: Record<string, Float32Array> = {};
  for (const [name, v] of momentum.velocity) velocity[name] = (v.dataSync() as Float32Array).slice();
  return { ...position, layers: modelValues(model), velocity, batcher: batcher.state(), history: [...history], elapsedSeconds };
}

function restoreMomentum(momentum: MomentumState, velocity: Readonly<Record<string, Float32Array>>): void {
  for (const [name, v] of momentum.velocity) {
    const values = velocity[name];
    if (!values || values.length !== v.size) throw new TrainerArgumentError('trainNetwork', `resume.velocity.${name}`, `${v.size} values`, values ? `${values.length}` : 'missing');
    tf.tidy(() => v.assign(tf.tensor(values, v.shape, 'float32')));
  }
}

function allFinite(model: CoreModel): boolean {
  for (const layer of model.layers)
    for (const v of [layer.W, layer.b, layer.gamma, layer.beta, layer.runningMean, layer.runningVar]) {
      if (!v) continue;
      const values = v.dataSync();
      for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
    }
  return true;
}

/**
 * Trains a network on prepared data by the config. Resolves with the outcome; a run that diverges
 * (NaN/Inf loss, cost or parameter) resolves with status 'diverged' and says where.
 */
export async function trainNetwork(config: TrainConfig, data: PreparedData, options: TrainNetworkOptions = {}): Promise<TrainingOutcome> {
  if (!backendInfo()) await initBackend();
  const started = performance.now();
  const networkConfig = resolveConfig('trainNetwork', networkConfigOf(config));
  if (data.train.x.cols !== config.data.dims)
    throw new TrainerArgumentError('trainNetwork', 'data.train', `${config.data.dims} features (config.data.dims)`, `${data.train.x.cols}`);
  const bn = config.network.batchNorm && config.network.hiddenDims.length > 0;
  const resume = options.resume ?? null;
  const model = resume ? modelFromValues(networkConfig, resume.layers) : createModel(networkConfig, { init: config.network.init, seed: config.seed });
  const momentum = createMomentumState(model);
  let batchBuffers: MiniBatcher | null = null; // disposed at the end (its buffers may live in the kernel threads' memory)
  try {
    if (resume) restoreMomentum(momentum, resume.velocity);
    const batchSize = Math.min(config.batchSize, data.train.x.rows);
    const batcher = new MiniBatcher(data.train, batchSize, config.seed, { keepRemainder: true, minBatchRows: bn ? 2 : 1, flip: data.flip });
    batchBuffers = batcher;
    if (resume) batcher.restore(resume.batcher);
    const notes = [...data.notes];
    if (batchSize < config.batchSize) notes.push(`batch size ${config.batchSize} is more than the ${data.train.x.rows} training rows: using ${batchSize}`);
    if (batcher.droppedRows > 0) notes.push(`the last batch of every epoch would hold ${batcher.droppedRows} row under batch norm (its variance is 0): it is dropped`);
    for (const message of notes) options.onEvent?.({ kind: 'note', message });

    const stepsPerEpoch = batcher.batchesPerEpoch;
    const epochs = plannedEpochs(config, stepsPerEpoch);
    const totalSteps = plannedSteps(config) ?? epochs * stepsPerEpoch;
    const history: EpochRecord[] = resume ? [...resume.history] : [];
    let epoch = resume ? resume.epoch : 0;
    let step = resume ? resume.step : 0;
    let globalStep = resume ? resume.globalStep : 0;
    const priorSeconds = resume ? resume.elapsedSeconds : 0;
    const elapsed = () => priorSeconds + (performance.now() - started) / 1000;
    const { lambda, momentum: rho } = config.optimizer;
    options.onEvent?.({ kind: 'start', epochs, stepsPerEpoch, totalSteps, resumedAt: resume ? { epoch: resume.epoch, step: resume.step } : null });

    const finish = (status: RunStatus, divergence: Divergence | null, state: TrainingState | null, test: SplitMetrics | null): TrainingOutcome => {
      const last = history[history.length - 1] ?? null;
      let bestValidationEpoch: number | null = null;
      for (const record of history)
        if (record.validation && (bestValidationEpoch === null || record.validation.accuracy > history[bestValidationEpoch - 1].validation!.accuracy)) bestValidationEpoch = record.epoch;
      const summary: RunSummary = {
        status, epochs: history.length, steps: globalStep, train: last?.train ?? null, validation: last?.validation ?? null, test, bestValidationEpoch,
        seconds: elapsed(), backend: backendInfo()?.name ?? 'unknown', droppedRows: batcher.droppedRows, divergence, notes,
      };
      return { status, model, history, summary, state };
    };
    const diverged = (message: string) => {
      const lastGoodEpoch = history.length;
      return finish('diverged', { epoch: epoch + 1, step: step + 1, message, lastGoodEpoch }, null, null);
    };

    let lastYield = performance.now();
    for (; epoch < epochs && globalStep < totalSteps; epoch++, step = 0) {
      const epochStarted = performance.now();
      // Each epoch draws its order once; a run stopped after that draw resumes without drawing again.
      if (batcher.shuffleCount < epoch + 1) batcher.shuffle();
      // η of the epoch's first step (also for an epoch resumed part-way).
      const firstRate = learningRateAt(config, epoch, globalStep - step);
      options.onEvent?.({ kind: 'epoch-start', epoch: epoch + 1, epochs, learningRate: firstRate });
      for (; step < stepsPerEpoch && globalStep < totalSteps; step++) {
        if (performance.now() - lastYield > YIELD_EVERY_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          lastYield = performance.now();
        }
        if (options.signal?.aborted) {
          const state = captureState(model, momentum, batcher, { epoch, step, globalStep }, history, elapsed());
          options.onCheckpoint?.(state);
          return finish('aborted', null, state, null);
        }
        const batch = batcher.batch(step);
        const learningRate = learningRateAt(config, epoch, globalStep);
        // The next batch is gathered during this step (MiniBatcher.prefetchDuring). The batch loss
        // comes back with the step (one small read): a NaN stops the run at this step, not an epoch later.
        const next = step + 1 < stepsPerEpoch ? step + 1 : null;
        const { loss } = batcher.prefetchDuring(next, () => trainStep(model, momentum, batch.x, batch.labels, { lambda, learningRate, momentum: rho }, { returnLoss: true }));
        if (!Number.isFinite(loss)) return diverged(`the training loss became ${loss} at step ${step + 1} of epoch ${epoch + 1} (η ${learningRate})`);
        globalStep++;
        options.onEvent?.({ kind: 'step', epoch: epoch + 1, step: step + 1, stepsPerEpoch, globalStep, totalSteps, loss: loss! });
      }
      const stepSeconds = (performance.now() - epochStarted) / 1000;
      const stepsThisEpoch = step;
      step = stepsThisEpoch - 1; // a divergence found below is reported at the epoch's last step
      if (!allFinite(model)) return diverged(`a parameter or running average stopped being finite during epoch ${epoch + 1}`);
      const penalty = l2Penalty(model, lambda);
      const train = evaluateSplit(model, data.train, lambda, config.evalChunkSize, penalty);
      const validation = data.validation ? evaluateSplit(model, data.validation, lambda, config.evalChunkSize, penalty) : null;
      if (!Number.isFinite(train.cost)) return diverged(`the training cost became ${train.cost} after epoch ${epoch + 1}`);
      const record: EpochRecord = { epoch: epoch + 1, learningRate: firstRate, steps: stepsThisEpoch, train, validation, seconds: (performance.now() - epochStarted) / 1000, stepSeconds };
      history.push(record);
      options.onEvent?.({ kind: 'epoch-end', record, epochs });
      // The state after this epoch: the next one starts at its step 0 (and shuffles then).
      options.onCheckpoint?.(captureState(model, momentum, batcher, { epoch: epoch + 1, step: 0, globalStep }, history, elapsed()));
    }
    if (config.preciseBn && bn) {
      recomputePopulationStatistics(model, data.train.x, config.evalChunkSize);
      options.onEvent?.({ kind: 'note', message: 'BN population statistics recomputed over the training split (precise BN)' });
    }
    const test = data.test ? evaluateSplit(model, data.test, lambda, config.evalChunkSize) : null;
    return finish('completed', null, captureState(model, momentum, batcher, { epoch, step: 0, globalStep }, history, elapsed()), test);
  } catch (error) {
    disposeModel(model);
    throw error;
  } finally {
    batchBuffers?.dispose();
    disposeMomentumState(momentum);
  }
}
