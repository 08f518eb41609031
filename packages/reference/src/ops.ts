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
 * The max's own term is exactly 1, so log Σ = log1p(Σ of the others): for a confident row that
 * sum t is tiny and log(1 + t) would keep only ~ε/t of its relative accuracy (log1p keeps all).
 */
export function crossEntropyForward(logits: Matrix, labels: ArrayLike<number>): number {
  const { rows: n, cols: k } = logits;
  let total = 0;
  for (let i = 0; i < n; i++) {
    let argmax = 0;
    for (let j = 1; j < k; j++) if (logits.data[i * k + j] > logits.data[i * k + argmax]) argmax = j;
    const max = logits.data[i * k + argmax];
    let others = 0;
    for (let j = 0; j < k; j++) if (j !== argmax) others += Math.exp(logits.data[i * k + j] - max);
    // max − s_y first (0 when the label wins): adding the small log1p term to max and then
    // subtracting max again would leave only an ulp of max of it.
    total += Math.log1p(others) + (max - logits.data[i * k + labels[i]]);
  }
  return total / n;
}

/**
 * ∂(mean CE)/∂logits = (P − onehot(Y)) / n. The label's entry p_y − 1 is computed as −Σ_{j≠y} p_j
 * (equal, since softmax rows sum to 1): for a confident row p_y − 1 would cancel to a few ulps.
 */
export function crossEntropyBackward(probs: Matrix, labels: ArrayLike<number>): Matrix {
  const { rows: n, cols: k } = probs;
  const g = zeros(n, k);
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    let others = 0;
    for (let j = 0; j < k; j++) {
      g.data[i * k + j] = probs.data[i * k + j] / n;
      if (j !== y) others += probs.data[i * k + j];
    }
    g.data[i * k + y] = -others / n;
  }
  return g;
}

/** λ Σ ‖W‖² over the given weight matrices (biases, γ and β are not penalized). */
export function l2Penalty(weights: readonly Matrix[], lambda: number): number {
  let sum = 0;
  for (const w of weights) for (const v of w.data) sum += v * v;
  return lambda * sum;
}
