import { predict, type CoreModel } from '@bnmlp/core';
import type { LabeledSplit } from './dataset.js';

export interface SplitMetrics {
  /** J = loss + λ Σ‖W‖². */
  readonly cost: number;
  /** Mean cross-entropy. */
  readonly loss: number;
  readonly accuracy: number;
}

/** λ Σ‖W‖² summed in float64 (a float32 sum of 150,000 squares loses ~1e-5 relative). */
export function l2Penalty(model: CoreModel, lambda: number): number {
  if (lambda === 0) return 0;
  let sum = 0;
  for (const layer of model.layers) {
    const w = layer.W.dataSync();
    for (let i = 0; i < w.length; i++) sum += w[i] * w[i];
  }
  return lambda * sum;
}

/** Inference-mode (running averages) cost, loss and accuracy over a split, `chunkSize` rows at a time. */
export function evaluateSplit(model: CoreModel, split: LabeledSplit, lambda: number, chunkSize = 1000, penalty = l2Penalty(model, lambda)): SplitMetrics {
  const result = predict(model, split.x, { labels: split.labels, chunkSize });
  return { cost: result.loss! + penalty, loss: result.loss!, accuracy: result.accuracy! };
}

export interface DetailedMetrics extends SplitMetrics {
  readonly rows: number;
  /** Accuracy per true class (NaN for a class with no rows). */
  readonly perClassAccuracy: readonly number[];
  /** confusion[true][predicted] counts. */
  readonly confusion: readonly (readonly number[])[];
}

export function evaluateDetailed(model: CoreModel, split: LabeledSplit, lambda: number, chunkSize = 1000): DetailedMetrics {
  const classes = model.config.classes;
  const result = predict(model, split.x, { labels: split.labels, chunkSize });
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < split.x.rows; i++) confusion[split.labels[i]][result.predictions[i]]++;
  const perClassAccuracy = confusion.map((row, c) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total === 0 ? Number.NaN : row[c] / total;
  });
  const penalty = l2Penalty(model, lambda);
  return { cost: result.loss! + penalty, loss: result.loss!, accuracy: result.accuracy!, rows: split.x.rows, perClassAccuracy, confusion };
}
