import { ReferenceArgumentError, describeValue } from './errors.js';
import type { Matrix } from './matrix.js';
import { costAndGradients, updateRunningAverages, type CostResult, type Gradients } from './model.js';
import { parameters, type Network, type ParameterRef } from './network.js';

/** The gradient entries for one parameter (same layout as `ref.values`). */
export function gradientOf(grads: Gradients, ref: ParameterRef): Float64Array {
  const layer = grads.layers[ref.layer];
  const values = ref.kind === 'W' ? layer.W.data : ref.kind === 'b' ? layer.b : ref.kind === 'gamma' ? layer.gamma : layer.beta;
  if (!values) throw new Error(`no gradient for ${ref.name}`);
  return values;
}

/**
 * Momentum buffers by parameter name. They store η-scaled steps: v = ρ·v + η·∇, θ = θ − v
 * (so changing η mid-training does not rescale the stored history).
 */
export type Velocity = Record<string, Float64Array>;

export function createVelocity(net: Network): Velocity {
  return Object.fromEntries(parameters(net).map((ref) => [ref.name, new Float64Array(ref.values.length)]));
}

export interface SgdSettings {
  readonly learningRate: number;
  readonly momentum: number;
}

/** In place: v = ρ·v + η·∇; θ = θ − v, for every parameter. */
export function momentumStep(net: Network, velocity: Velocity, grads: Gradients, { learningRate, momentum }: SgdSettings): void {
  for (const ref of parameters(net)) {
    const g = gradientOf(grads, ref);
    const v = velocity[ref.name];
    for (let i = 0; i < v.length; i++) {
      v[i] = momentum * v[i] + learningRate * g[i];
      ref.values[i] -= v[i];
    }
  }
}

/**
 * One mini-batch step, in place: training-mode forward and backward, the momentum update, then
 * the running-average update with this batch's statistics (computed before the update, as
 * PyTorch does). Returns the batch's cost before the update.
 */
export function trainStep(net: Network, velocity: Velocity, x: Matrix, labels: ArrayLike<number>, lambda: number, sgd: SgdSettings): CostResult {
  for (const [name, value] of Object.entries(sgd))
    if (!Number.isFinite(value) || value < 0) throw new ReferenceArgumentError('trainStep', name, 'a finite number >= 0', describeValue(value));
  const result = costAndGradients(net, x, labels, lambda, 'train');
  momentumStep(net, velocity, result.gradients, sgd);
  updateRunningAverages(net, result.forward);
  return { cost: result.cost, loss: result.loss, accuracy: result.accuracy };
}
