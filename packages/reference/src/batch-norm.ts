import type { Matrix } from './matrix.js';
import { zeros } from './matrix.js';

/*
Note [BN backward through batch statistics]
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Training-mode batch norm, per feature j over a batch of n rows (index i):

  μ = (1/n) Σᵢ sᵢ            σ² = (1/n) Σᵢ (sᵢ − μ)²      (biased variance)
  ŝᵢ = (sᵢ − μ) / σ̃,         σ̃ = sqrt(σ² + ε)             (ε inside the sqrt)
  s̃ᵢ = γ ŝᵢ + β

μ and σ² depend on every sᵢ, so ∂J/∂sᵢ is not just gᵢ/σ̃ (with gᵢ = ∂J/∂ŝᵢ = γ ∂J/∂s̃ᵢ).
By the chain rule through μ and σ²:

  ∂ŝₖ/∂sᵢ = (δₖᵢ − 1/n)/σ̃ − (sₖ − μ)/σ̃³ · ∂σ²/∂sᵢ,   ∂σ²/∂sᵢ = (2/n)(sᵢ − μ)
          = (1/σ̃) (δₖᵢ − 1/n − ŝₖ ŝᵢ / n)

(the μ-term of ∂σ²/∂sᵢ vanishes because Σₖ (sₖ − μ) = 0). Summing over k:

  ∂J/∂sᵢ = Σₖ gₖ ∂ŝₖ/∂sᵢ = (1/σ̃) ( gᵢ − mean(g) − ŝᵢ · mean(g ⊙ ŝ) )

Consequences the tests check:
  - Σᵢ ∂J/∂sᵢ = 0 (Σ ŝᵢ = 0), so anything added per feature before BN, such as the linear layer's
    bias b, has gradient exactly 0 (up to rounding of the sums).
  - ∂J/∂s is orthogonal to ŝ (Σ ŝᵢ² = n σ²/σ̃²), so scaling the scores by c > 0 changes nothing when ε → 0.
  - ∂J/∂γ = Σᵢ ŝᵢ ∂J/∂s̃ᵢ and ∂J/∂β = Σᵢ ∂J/∂s̃ᵢ.
A numeric check must therefore recompute μ and σ² for every perturbed forward pass (training
mode); using fixed or running statistics instead checks a different function, which is exactly
the bug this project exists to catch.
*/

export interface BatchNormForward {
  readonly mean: Float64Array;
  /** Biased batch variance σ². */
  readonly variance: Float64Array;
  /** ŝ = (s − μ) / sqrt(σ² + ε). */
  readonly normalized: Matrix;
}

/**
 * Batch statistics with two passes (mean first, then squared deviations): no E[x²] − E[x]²
 * cancellation. The mean gets one correction, mean += Σ(s − mean)/n: the rounded sum can leave it
 * an ulp off (3 × 0.1), which for a constant feature would give ŝ ≈ ±ulp/sqrt(ε) instead of 0
 * (and a ReLU sign decided by rounding when β = 0). With the correction a constant feature's mean
 * is exact: s − mean is exact there (Sterbenz), and so are its sum and the division.
 */
export function batchStatistics(s: Matrix): { mean: Float64Array; variance: Float64Array } {
  const { rows: n, cols: d } = s;
  const mean = new Float64Array(d);
  const variance = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j] += s.data[i * d + j];
  for (let j = 0; j < d; j++) mean[j] /= n;
  const correction = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) correction[j] += s.data[i * d + j] - mean[j];
  for (let j = 0; j < d; j++) mean[j] += correction[j] / n;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) {
      const dev = s.data[i * d + j] - mean[j];
      variance[j] += dev * dev;
    }
  for (let j = 0; j < d; j++) variance[j] /= n;
  return { mean, variance };
}

/** ŝ = (s − μ) / sqrt(σ² + ε) with the given statistics (batch ones in training, running ones in inference). */
export function normalize(s: Matrix, mean: Float64Array, variance: Float64Array, eps: number): Matrix {
  const { rows: n, cols: d } = s;
  const out = zeros(n, d);
  for (let j = 0; j < d; j++) {
    const invStd = 1 / Math.sqrt(variance[j] + eps);
    for (let i = 0; i < n; i++) out.data[i * d + j] = (s.data[i * d + j] - mean[j]) * invStd;
  }
  return out;
}

export function batchNormForward(s: Matrix, eps: number): BatchNormForward {
  const { mean, variance } = batchStatistics(s);
  return { mean, variance, normalized: normalize(s, mean, variance, eps) };
}

/** ∂J/∂s from g = ∂J/∂ŝ, through the batch statistics: see Note [BN backward through batch statistics]. */
export function batchNormBackward(g: Matrix, forward: BatchNormForward, eps: number): Matrix {
  const { rows: n, cols: d } = g;
  const xhat = forward.normalized.data;
  const out = zeros(n, d);
  for (let j = 0; j < d; j++) {
    let meanG = 0;
    let meanGXhat = 0;
    for (let i = 0; i < n; i++) {
      meanG += g.data[i * d + j];
      meanGXhat += g.data[i * d + j] * xhat[i * d + j];
    }
    meanG /= n;
    meanGXhat /= n;
    const invStd = 1 / Math.sqrt(forward.variance[j] + eps);
    for (let i = 0; i < n; i++) out.data[i * d + j] = invStd * (g.data[i * d + j] - meanG - xhat[i * d + j] * meanGXhat);
  }
  return out;
}

/** s̃ = γ ŝ + β (either may be absent: identity). */
export function scaleShiftForward(xhat: Matrix, gamma: Float64Array | null, beta: Float64Array | null): Matrix {
  if (!gamma && !beta) return xhat;
  const { rows: n, cols: d } = xhat;
  const out = zeros(n, d);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) out.data[i * d + j] = (gamma ? gamma[j] : 1) * xhat.data[i * d + j] + (beta ? beta[j] : 0);
  return out;
}

/** Given ∂J/∂s̃: ∂J/∂γ = Σᵢ ŝ ∂J/∂s̃, ∂J/∂β = Σᵢ ∂J/∂s̃, ∂J/∂ŝ = γ ∂J/∂s̃. */
export function scaleShiftBackward(
  upstream: Matrix,
  xhat: Matrix,
  gamma: Float64Array | null,
): { dGamma: Float64Array; dBeta: Float64Array; dXhat: Matrix } {
  const { rows: n, cols: d } = upstream;
  const dGamma = new Float64Array(d);
  const dBeta = new Float64Array(d);
  const dXhat = zeros(n, d);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < d; j++) {
      const u = upstream.data[i * d + j];
      dGamma[j] += u * xhat.data[i * d + j];
      dBeta[j] += u;
      dXhat.data[i * d + j] = (gamma ? gamma[j] : 1) * u;
    }
  return { dGamma, dBeta, dXhat };
}
