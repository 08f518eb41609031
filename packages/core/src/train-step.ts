import * as tf from '@tensorflow/tfjs-core';
import { isTensor, oneHotTensor, validateInputBatch, validateLabels, validateNonNegative, type InputBatch, type Labels } from './api.js';
import { CoreArgumentError, describeValue } from './errors.js';
import { parameterEntries, type CoreModel, type ParameterEntry } from './model.js';
import { backwardTrace, forwardTrace, lossTensors } from './network.js';
import { blends, momentumSteps, threadedScoresOfRows } from './wasm-kernels.js';

export interface SgdSettings {
  /** L2 strength in J = loss + λ Σ‖W‖². */
  readonly lambda: number;
  /** η. */
  readonly learningRate: number;
  /** ρ. */
  readonly momentum: number;
}

/**
 * Momentum buffers, one per parameter, as variables. They store η-scaled steps:
 * v = ρ·v + η·∇, θ = θ − v (as @bnmlp/reference's momentumStep).
 */
export interface MomentumState {
  readonly velocity: ReadonlyMap<string, tf.Variable>;
}

export function createMomentumState(model: CoreModel): MomentumState {
  return { velocity: new Map(parameterEntries(model).map((e) => [e.name, tf.tidy(() => tf.variable(tf.zerosLike(e.variable)))])) };
}

export function disposeMomentumState(state: MomentumState): void {
  for (const v of state.velocity.values()) v.dispose();
}

export interface TrainStepResult {
  /** Mean cross-entropy of the batch before the update (only with `returnLoss`; reading it synchronises). */
  readonly loss: number | null;
}

function validateSettings(op: string, settings: SgdSettings): void {
  if (!settings || typeof settings !== 'object') throw new CoreArgumentError(op, 'settings', 'an object {lambda, learningRate, momentum}', describeValue(settings));
  validateNonNegative(op, 'settings.lambda', settings.lambda);
  validateNonNegative(op, 'settings.learningRate', settings.learningRate);
  validateNonNegative(op, 'settings.momentum', settings.momentum);
}

/**
 * One fused mini-batch step, in place and without an autodiff tape: training-mode forward, the
 * hand-written backward, v = ρv + η∇ and θ −= v for every parameter, then the BN running averages
 * avg = α·avg + (1 − α)·batch from this batch's statistics (as @bnmlp/reference's trainStep).
 * Every intermediate tensor is freed before returning.
 */
export function trainStep(
  model: CoreModel, state: MomentumState, x: InputBatch, labels: Labels, settings: SgdSettings, options: { returnLoss?: boolean } = {},
): TrainStepResult {
  const op = 'trainStep';
  validateSettings(op, settings);
  const rows = validateInputBatch(op, model, x, 'train');
  validateLabels(op, labels, rows, model.config.classes);
  const entries = parameterEntries(model);
  // All checked before anything is updated: a bad buffer must not leave a half-applied step.
  for (const e of entries) {
    const v = state?.velocity?.get(e.name);
    if (!v) throw new CoreArgumentError(op, 'state', `momentum buffers for ${e.name} (createMomentumState(model))`, 'missing');
    if (v.shape.join(',') !== e.variable.shape.join(','))
      throw new CoreArgumentError(op, `state.velocity.${e.name}`, `shape [${e.variable.shape.join(',')}]`, `shape [${v.shape.join(',')}]`);
  }
  let loss: number | null = null;
  tf.tidy(() => {
    const oneHot = oneHotTensor(labels, model.config.classes);
    // When layer 1's products run on the kernel threads, a Float32Matrix batch goes there as rows,
    // without a tensor of it (one copy of the batch fewer; see threadedScoresOfRows). A new tag
    // names this batch's contents, which the caller may overwrite after the step.
    const first = model.layers[0];
    const batchRows = isTensor(x) ? null : { rows: x.data, tag: {} };
    const firstScores = batchRows && threadedScoresOfRows(batchRows, rows, first.W, first.b);
    const firstLayerRows = firstScores ? batchRows : null;
    const input = isTensor(x) ? x : firstLayerRows ? (tf.zeros([0, x.cols]) as tf.Tensor2D) : tf.tensor2d(x.data, [x.rows, x.cols], 'float32');
    const trace = forwardTrace(model, input, 'train', firstScores);
    const weights = entries.filter((e) => e.kind === 'W'); // one per layer, in layer order
    const wVelocity = weights.map((e) => state.velocity.get(e.name)! as tf.Variable<tf.Rank.R2>);
    const grads = backwardTrace(model, trace, oneHot, settings.lambda, 'train', false, {
      ...settings, velocity: wVelocity, ...(firstLayerRows ? { firstLayerRows } : {}),
    });
    // Read before anything is assigned: the loss of the parameters the batch saw.
    if (options.returnLoss) loss = (grads.crossEntropy ?? lossTensors(model, trace.logits, oneHot, 0).loss).dataSync()[0];
    // W and its velocity were stepped in the backward pass (on wasm in one kernel per layer).
    grads.weightSteps!.forEach((step, l) => {
      wVelocity[l].assign(step.v);
      weights[l].variable.assign(step.w);
    });
    applyMomentum(entries.filter((e) => e.kind !== 'W'), state, grads.layers, settings);
    updateRunningAverages(model, trace.layers);
  });
  return { loss };
}

function applyMomentum(entries: ParameterEntry[], state: MomentumState, grads: ReturnType<typeof backwardTrace>['layers'], { learningRate, momentum }: SgdSettings): void {
  const velocity = entries.map((e) => state.velocity.get(e.name)!);
  // A null gradient is the bias before training-mode BN: exactly 0, so v = ρv and θ −= v.
  const targets = entries.map((e, i) => ({ theta: e.variable as tf.Tensor, v: velocity[i] as tf.Tensor, g: grads[e.layer][e.kind as Exclude<typeof e.kind, 'W'>] as tf.Tensor | null }));
  momentumSteps(targets, learningRate, momentum).forEach((next, i) => {
    velocity[i].assign(next.v);
    entries[i].variable.assign(next.theta);
  });
}

function updateRunningAverages(model: CoreModel, layers: ReturnType<typeof forwardTrace>['layers']): void {
  const alpha = model.config.runningAverageKeep;
  const averages: tf.Variable[] = [];
  const pairs: Array<[tf.Tensor1D, tf.Tensor1D]> = [];
  model.layers.forEach((layer, l) => {
    const t = layers[l];
    if (!layer.runningMean || !layer.runningVar || !t.batchMean || !t.batchVar) return;
    averages.push(layer.runningMean, layer.runningVar);
    pairs.push([layer.runningMean as tf.Tensor1D, t.batchMean], [layer.runningVar as tf.Tensor1D, t.batchVar]);
  });
  blends(pairs, alpha).forEach((next, i) => averages[i].assign(next));
}
