import { matMul, matMulTransposeA, matMulTransposeB, zeros, type Matrix } from './matrix.js';

// Each op's forward and backward side by side. Backward functions take the upstream gradient
// ∂J/∂output and return gradients for the op's inputs.

/** S = X W + b (b broadcast over rows). */
export function linearForward(x: Matrix, w: Matrix, b: Float64Array): Matrix {
  const s = matMul(x, w);
  for (let i = 0; i < s.rows; i++) for (let j = 0; j < s.cols; j++) s.data[i * s.cols + j] += b[j];
  return s;
}

/** ∂J/∂W = Xᵀ G, ∂J/∂b = Σᵢ G, ∂J/∂X = G Wᵀ. */
export function linearBackward(g: Matrix, x: Matrix, w: Matrix): { dW: Matrix; db: Float64Array; dX: Matrix } {
  const db = new Float64Array(g.cols);
  for (let i = 0; i < g.rows; i++) for (let j = 0; j < g.cols; j++) db[j] += g.data[i * g.cols + j];
  return { dW: matMulTransposeA(x, g), db, dX: matMulTransposeB(g, w) };
}

/** max(0, z). */
export function reluForward(z: Matrix): Matrix {
  return { rows: z.rows, cols: z.cols, data: z.data.map((v) => (v > 0 ? v : 0)) };
}

/** Passes the gradient where z > 0 (the subgradient at exactly 0 is taken as 0). */
export function reluBackward(g: Matrix, z: Matrix): Matrix {
  return { rows: g.rows, cols: g.cols, data: g.data.map((v, i) => (z.data[i] > 0 ? v : 0)) };
}

/** Row-wise softmax, shifted by the row max so logits of any magnitude stay finite. */
export function softmax(logits: Matrix): Matrix {
  const { rows: n, cols: k } = logits;
  const p = zeros(n, k);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, logits.data[i * k + j]);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += p.data[i * k + j] = Math.exp(logits.data[i * k + j] - max);
    for (let j = 0; j < k; j++) p.data[i * k + j] /= sum;
  }
  return p;
}

/**
 * Mean cross-entropy, per row log Σ exp(s) − s_y computed as a shifted log-sum-exp so that
 * huge logits give a finite loss (log of a softmax that underflowed to 0 would give Infinity).
 */
export function crossEntropyForward(logits: Matrix, labels: ArrayLike<number>): number {
  const { rows: n, cols: k } = logits;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, logits.data[i * k + j]);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += Math.exp(logits.data[i * k + j] - max);
    total += Math.log(sum) + max - logits.data[i * k + labels[i]];
  }
  return total / n;
}

/** ∂(mean CE)/∂logits = (P − onehot(Y)) / n. */
export function crossEntropyBackward(probs: Matrix, labels: ArrayLike<number>): Matrix {
  const { rows: n, cols: k } = probs;
  const g = zeros(n, k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) g.data[i * k + j] = probs.data[i * k + j] / n;
    g.data[i * k + labels[i]] -= 1 / n;
  }
  return g;
}

/** λ Σ ‖W‖² over the given weight matrices (biases, γ and β are not penalized). */
export function l2Penalty(weights: readonly Matrix[], lambda: number): number {
  let sum = 0;
  for (const w of weights) for (const v of w.data) sum += v * v;
  return lambda * sum;
}
