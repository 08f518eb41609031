import * as ref from '@bnmlp/reference';
import { costAndGradients, type Float32Matrix } from '../api.js';
import { disposeModel, modelFromValues, modelValues, parameterEntries, type CoreModel, type LayerValues, type ParameterKind } from '../model.js';
import { createPrng, nextNormal } from '../prng.js';
import { coreReluSigns, referenceMatrix, referenceOf } from './arbitraries.js';
import { ROUNDING_BOUND_FACTOR, TOLERANCES, UNIT_ROUNDOFF, roundingBounds, sameSigns, type Limit } from './compare.js';

/*
Random-direction gradient check in float32 (JAX check_vjp / PyTorch fast gradcheck style), on the
core alone: for a random unit direction t over all parameters jointly,
    analytic  A = ⟨∇J, θ₊ − θ₋⟩ / (2ε)      numeric  D = (J(θ₊) − J(θ₋)) / (2ε)
where θ± = fl32(θ ± εt) are the perturbed parameters as stored (the step actually taken, so the
rounding of θ ± εt to float32 is not an error) and J is the core's own float32 cost.

Error budget of D − A, with u = 2⁻²⁴ and c = ROUNDING_BOUND_FACTOR:
  - roundoff: each J carries δJ ≤ c·u·(3·B + |J| + √m·λ‖W‖²), B the logits' rounding bound (the
    cross-entropy moves by at most 2·max|δz| and its own log-sum-exp rounds at ~u·B), m the number
    of weights in the penalty sum. So D is off by ≤ δJ/ε.
  - truncation: D = A + (ε²/6)·D³J[t,t,t] + O(ε⁴). Measured, not guessed: with e(h) = D(h) − A(h),
    e(2ε) − e(ε) = 3·(ε²/6)·D³J[t,t,t] + noise, so truncation ≈ |e(2ε) − e(ε)|/3 (allowed twice).
  - the analytic side: float32 gradients carry c·u·bound_p per entry (compare.ts's gradient
    bounds, with first-order products), so A is off by ≤ Σ_p ‖step_p‖₁/(2ε) · c·u·bound_p.
ε = 1e-2 balances roundoff ~u·B/ε against truncation ~ε²: with B ~ 10 and D³J ~ 1 both are ~1e-5…1e-4.
*/
export const DIRECTIONAL_EPS = 1e-2;

export interface DirectionalCheck {
  /** Some ReLU input changed sign at θ ± εt or θ ± 2εt: J is not smooth along the segment; nothing compared. */
  readonly kink: boolean;
  readonly analytic: number;
  readonly numeric: number;
  /** The limit for |numeric − analytic| (relative part: TOLERANCES.gradient of |numeric|). */
  readonly limit: Limit;
  readonly budget: { readonly roundoff: number; readonly truncation: number; readonly analytic: number };
}

/** A random unit vector over every parameter entry, by parameter name. */
export function randomDirection(model: CoreModel, seed: number): Record<string, Float64Array> {
  const prng = createPrng(seed);
  const t: Record<string, Float64Array> = {};
  let norm = 0;
  for (const e of parameterEntries(model)) {
    t[e.name] = Float64Array.from({ length: e.variable.size }, () => nextNormal(prng));
    for (const v of t[e.name]) norm += v * v;
  }
  norm = Math.sqrt(norm);
  for (const name in t) t[name] = t[name].map((v) => v / norm);
  return t;
}

function perturb(model: CoreModel, t: Record<string, Float64Array>, step: number): LayerValues[] {
  const values = modelValues(model);
  for (const e of parameterEntries(model)) {
    const a = values[e.layer][e.kind as ParameterKind]!;
    const dir = t[e.name];
    // Float32Array assignment rounds θ + step·t to float32: the step actually taken is read back.
    for (let i = 0; i < a.length; i++) a[i] = a[i] + step * dir[i];
  }
  return values;
}

function costAt(model: CoreModel, values: LayerValues[], x: Float32Matrix, labels: ArrayLike<number>, lambda: number): { cost: number; signs: Uint8Array } {
  const m = modelFromValues(model.config, values);
  try {
    return { cost: costAndGradients(m, x, labels as Int32Array, lambda).cost, signs: coreReluSigns(m, x, 'train') };
  } finally {
    disposeModel(m);
  }
}

/** ⟨∇J, θ₊ − θ₋⟩/(2h) with the stored (rounded) θ±. */
function analyticAlong(model: CoreModel, gradients: Record<string, ArrayLike<number>>, plus: LayerValues[], minus: LayerValues[], h: number): { value: number; l1: Record<string, number> } {
  let value = 0;
  const l1: Record<string, number> = {};
  for (const e of parameterEntries(model)) {
    const p = plus[e.layer][e.kind]!;
    const q = minus[e.layer][e.kind]!;
    const g = gradients[e.name];
    l1[e.name] = 0;
    for (let i = 0; i < p.length; i++) {
      const step = (p[i] - q[i]) / (2 * h);
      value += g[i] * step;
      l1[e.name] += Math.abs(step);
    }
  }
  return { value, l1 };
}

/** The check along direction `t` for the analytic gradients `gradients` (by parameter name). */
export function directionalCheck(
  model: CoreModel, x: Float32Matrix, labels: ArrayLike<number>, lambda: number,
  gradients: Record<string, ArrayLike<number>>, t: Record<string, Float64Array>, eps = DIRECTIONAL_EPS,
): DirectionalCheck {
  const c = ROUNDING_BOUND_FACTOR * UNIT_ROUNDOFF;
  const base = costAt(model, modelValues(model), x, labels, lambda);
  const at = (h: number) => {
    const plus = perturb(model, t, h);
    const minus = perturb(model, t, -h);
    const jPlus = costAt(model, plus, x, labels, lambda);
    const jMinus = costAt(model, minus, x, labels, lambda);
    const kink = !sameSigns(jPlus.signs, base.signs) || !sameSigns(jMinus.signs, base.signs);
    const analytic = analyticAlong(model, gradients, plus, minus, h);
    return { kink, numeric: (jPlus.cost - jMinus.cost) / (2 * h), analytic };
  };
  const one = at(eps);
  const two = at(2 * eps);

  const net = referenceOf(model);
  const bounds = roundingBounds(net, ref.forward(net, referenceMatrix(x), 'train'), labels, { firstOrderProducts: true });
  let weights = 0;
  let squares = 0;
  for (const layer of net.layers) {
    weights += layer.W.data.length;
    for (const w of layer.W.data) squares += w * w;
  }
  const deltaJ = c * (3 * bounds.logits + Math.abs(base.cost) + Math.sqrt(weights) * lambda * squares);
  const roundoff = deltaJ / eps;
  const truncation = 2 * (Math.abs(two.numeric - two.analytic.value - (one.numeric - one.analytic.value)) / 3);
  let analyticError = 0;
  for (const [name, l1] of Object.entries(one.analytic.l1)) analyticError += l1 * c * bounds.gradients[name];
  return {
    kink: one.kink || two.kink,
    analytic: one.analytic.value,
    numeric: one.numeric,
    limit: { tolerance: TOLERANCES.gradient, absolute: roundoff + truncation + analyticError },
    budget: { roundoff, truncation, analytic: analyticError },
  };
}
