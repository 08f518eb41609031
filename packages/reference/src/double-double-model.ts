import {
  DD_ONE, DD_ZERO, ddAdd, ddAddNumber, ddAddOuterProduct, ddAt, ddCloneMatrix, ddCompare, ddDiv, ddDivNumber, ddExp, ddFromNumber, ddLog,
  ddMatMulNumbers, ddMul, ddMulNumber, ddSet, ddSqrt, ddSub, ddZeros, twoProduct, twoSum, type DdMatrix, type DoubleDouble,
} from './double-double.js';
import { ReferenceArgumentError, describeValue } from './errors.js';
import type { Matrix } from './matrix.js';
import { validateBatch } from './model.js';
import type { Network, ParameterRef } from './network.js';

/**
 * The training-mode cost J of model.ts (forward, then costFromForward) in double-double arithmetic
 * (double-double.ts, ≈ 32 digits), for the stencil-4 gradient check: batch statistics are the
 * batch's own, recomputed for every perturbation; running averages are never read or written.
 *
 * Construction runs the unperturbed pass and keeps every layer's input, scores, ŝ and
 * pre-activation. A perturbed pass then starts at the perturbed layer: θᵢ + s is formed in
 * double-double (exact for a float64 θᵢ and s), so the step taken is exactly s and the difference
 * quotient needs no correction. Moving one entry of W, b, γ or β changes one column of its layer's
 * pre-activation, hence one column of the ReLU output, hence the next layer's scores by a rank-one
 * term; only the layers after that are recomputed in full. Same formulas as the float64 path
 * (two-pass BN statistics with the mean correction of batchStatistics, log-sum-exp cross-entropy),
 * so the two agree to float64 rounding and the decimal oracle confirms the extra digits.
 *
 * A perturbed pass returns null when some ReLU input changes sign relative to the unperturbed pass
 * (the checker skips such entries as kinks), without finishing the pass.
 */
export class DoubleDoubleCost {
  /** J at the network's own parameters. */
  readonly base: DoubleDouble;
  private readonly params: LayerParameters[];
  private readonly states: LayerState[];
  /** Σ‖W_l‖² per layer. */
  private readonly squares: DoubleDouble[];
  private readonly eps: number;
  private readonly labels: readonly number[];

  /** Reads the network, X and the labels once: later changes to them are not seen. */
  constructor(
    net: Network,
    x: Matrix,
    labels: ArrayLike<number>,
    private readonly lambda: number,
  ) {
    validateBatch('DoubleDoubleCost', net, x, labels, 'train');
    if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new ReferenceArgumentError('DoubleDoubleCost', 'lambda', 'a finite number >= 0', describeValue(lambda));
    this.eps = net.config.eps;
    this.labels = Array.from(labels);
    this.params = net.layers.map((layer) => ({
      W: Float64Array.from(layer.W.data),
      cols: layer.W.cols,
      b: Float64Array.from(layer.b),
      batchNorm: layer.bn !== null,
      gamma: layer.bn?.gamma ? Float64Array.from(layer.bn.gamma) : null,
      beta: layer.bn?.beta ? Float64Array.from(layer.bn.beta) : null,
    }));
    this.squares = this.params.map((p) => {
      let sum = DD_ZERO;
      for (const w of p.W) sum = ddAdd(sum, twoProduct(w, w));
      return sum;
    });
    this.states = [];
    let input: DdMatrix = { rows: x.rows, cols: x.cols, hi: Float64Array.from(x.data), lo: new Float64Array(x.data.length) };
    for (let l = 0; l < this.params.length; l++) {
      const p = this.params[l];
      const scores = ddMatMulNumbers(input, p.W, p.cols, p.b);
      const normalized = p.batchNorm ? normalizeColumns(scores, this.eps) : null;
      const pre = ddZeros(scores.rows, scores.cols);
      for (let j = 0; j < scores.cols; j++) this.writePreActivationColumn(l, j, scores, normalized, pre, this.gammaOf(l, j), this.betaOf(l, j));
      const state: LayerState = { input, scores, normalized, pre, active: positive(pre) };
      this.states.push(state);
      input = relu(pre);
    }
    this.base = this.costOf(this.states[this.states.length - 1].pre, this.squares);
  }

  /**
   * J with entry `index` of the parameter moved by exactly `step` (every other parameter as given),
   * or null when a ReLU input changes sign.
   */
  atEntry(ref: Pick<ParameterRef, 'kind' | 'layer'>, index: number, step: number): DoubleDouble | null {
    const l = this.layerOf('atEntry', ref);
    validateStep('atEntry', step);
    const p = this.params[l];
    const state = this.states[l];
    const size = ref.kind === 'W' ? p.W.length : p.cols;
    if (!(Number.isInteger(index) && index >= 0 && index < size)) throw new ReferenceArgumentError('DoubleDoubleCost.atEntry', 'index', `an integer in [0, ${size - 1}]`, describeValue(index));
    const j = ref.kind === 'W' ? index % p.cols : index;
    const pre = ddCloneMatrix(state.pre);
    let squares = this.squares;
    if (ref.kind === 'W' || ref.kind === 'b') {
      // Only column j of the scores moves: by step·(row i of the input) for W[i, j], by step for b[j].
      const scores = ddCloneMatrix(state.scores);
      const i = Math.floor(index / p.cols);
      for (let r = 0; r < scores.rows; r++) {
        const k = r * p.cols + j;
        const shift = ref.kind === 'W' ? ddMulNumber(ddAt(state.input, r * state.input.cols + i), step) : ddFromNumber(step);
        ddSet(scores, k, ddAdd(ddAt(scores, k), shift));
      }
      const normalized = p.batchNorm ? normalizeColumns(scores, this.eps, j) : null;
      this.writePreActivationColumn(l, j, scores, normalized, pre, this.gammaOf(l, j), this.betaOf(l, j));
      if (ref.kind === 'W') {
        // (w + s)² − w² = (2w + s)·s.
        squares = [...this.squares];
        squares[l] = ddAdd(squares[l], ddMulNumber(twoSum(2 * p.W[index], step), step));
      }
    } else {
      const gamma = ref.kind === 'gamma' ? twoSum(p.gamma![j], step) : this.gammaOf(l, j);
      const beta = ref.kind === 'beta' ? twoSum(p.beta![j], step) : this.betaOf(l, j);
      this.writePreActivationColumn(l, j, state.scores, state.normalized, pre, gamma, beta);
    }
    return this.finish(l, pre, j, squares);
  }

  /** J with the whole parameter moved by step·direction (entry k by step·direction[k]), or null when a ReLU input changes sign. */
  alongDirection(ref: Pick<ParameterRef, 'kind' | 'layer'>, direction: ArrayLike<number>, step: number): DoubleDouble | null {
    const l = this.layerOf('alongDirection', ref);
    validateStep('alongDirection', step);
    const p = this.params[l];
    const state = this.states[l];
    const size = ref.kind === 'W' ? p.W.length : p.cols;
    if (direction.length !== size) throw new ReferenceArgumentError('DoubleDoubleCost.alongDirection', 'direction', `${size} values`, describeValue(direction));
    const moved = (value: number, k: number) => ddAddNumber(twoProduct(step, direction[k]), value);
    const pre = ddZeros(state.pre.rows, state.pre.cols);
    let squares = this.squares;
    if (ref.kind === 'W' || ref.kind === 'b') {
      let scores: DdMatrix;
      if (ref.kind === 'W') {
        // (H W + b) + H (step·U): the product with U in double-double, then scaled by the step.
        const change = ddMatMulNumbers(state.input, Float64Array.from(direction), p.cols, null);
        scores = ddCloneMatrix(state.scores);
        for (let k = 0; k < scores.hi.length; k++) ddSet(scores, k, ddAdd(ddAt(scores, k), ddMulNumber(ddAt(change, k), step)));
        let sum = DD_ZERO;
        for (let k = 0; k < p.W.length; k++) {
          const w = moved(p.W[k], k);
          sum = ddAdd(sum, ddMul(w, w));
        }
        squares = [...this.squares];
        squares[l] = sum;
      } else {
        scores = ddCloneMatrix(state.scores);
        for (let k = 0; k < scores.hi.length; k++) ddSet(scores, k, ddAdd(ddAt(scores, k), twoProduct(step, direction[k % p.cols])));
      }
      const normalized = p.batchNorm ? normalizeColumns(scores, this.eps) : null;
      for (let j = 0; j < p.cols; j++) this.writePreActivationColumn(l, j, scores, normalized, pre, this.gammaOf(l, j), this.betaOf(l, j));
    } else {
      for (let j = 0; j < p.cols; j++) {
        const gamma = ref.kind === 'gamma' ? moved(p.gamma![j], j) : this.gammaOf(l, j);
        const beta = ref.kind === 'beta' ? moved(p.beta![j], j) : this.betaOf(l, j);
        this.writePreActivationColumn(l, j, state.scores, state.normalized, pre, gamma, beta);
      }
    }
    return this.finish(l, pre, null, squares);
  }

  private layerOf(op: string, ref: Pick<ParameterRef, 'kind' | 'layer'>): number {
    const p = this.params[ref.layer];
    const present = p && (ref.kind === 'W' || ref.kind === 'b' || (ref.kind === 'gamma' && p.gamma !== null) || (ref.kind === 'beta' && p.beta !== null));
    if (!present) throw new ReferenceArgumentError(`DoubleDoubleCost.${op}`, 'ref', 'a parameter of the network', `${describeValue(ref.kind)} of layer ${describeValue(ref.layer)}`);
    return ref.layer;
  }

  private gammaOf(l: number, j: number): DoubleDouble | null {
    const gamma = this.params[l].gamma;
    return gamma ? ddFromNumber(gamma[j]) : null;
  }

  private betaOf(l: number, j: number): DoubleDouble | null {
    const beta = this.params[l].beta;
    return beta ? ddFromNumber(beta[j]) : null;
  }

  /** Column j of layer l's pre-activation: γ ŝ + β with BN (either may be absent: identity), the scores without. */
  private writePreActivationColumn(l: number, j: number, scores: DdMatrix, normalized: DdMatrix | null, out: DdMatrix, gamma: DoubleDouble | null, beta: DoubleDouble | null): void {
    const source = this.params[l].batchNorm ? normalized! : scores;
    for (let r = 0; r < out.rows; r++) {
      const k = r * out.cols + j;
      let value = ddAt(source, k);
      if (gamma) value = ddMul(gamma, value);
      if (beta) value = ddAdd(value, beta);
      ddSet(out, k, value);
    }
  }

  /**
   * The rest of the pass from layer l's new pre-activation; `column` is the only column that
   * differs from the unperturbed pass, or null when any may.
   */
  private finish(l: number, pre: DdMatrix, column: number | null, squares: readonly DoubleDouble[]): DoubleDouble | null {
    const last = this.params.length - 1;
    for (let m = l; m < last; m++) {
      const base = this.states[m];
      if (changedSign(pre, base.active, column)) return null;
      const next = this.params[m + 1];
      let scores: DdMatrix;
      if (column !== null) {
        // The ReLU output moved in one column only: on rows where the unit is active, by the pre-activation's change.
        const change = { hi: new Float64Array(pre.rows), lo: new Float64Array(pre.rows) };
        for (let r = 0; r < pre.rows; r++) {
          const k = r * pre.cols + column;
          if (!base.active[k]) continue;
          const d = ddSub(ddAt(pre, k), ddAt(base.pre, k));
          change.hi[r] = d.hi;
          change.lo[r] = d.lo;
        }
        scores = ddCloneMatrix(this.states[m + 1].scores);
        ddAddOuterProduct(scores, change.hi, change.lo, next.W.subarray(column * next.cols, (column + 1) * next.cols));
      } else {
        scores = ddMatMulNumbers(relu(pre), next.W, next.cols, next.b);
      }
      const normalized = next.batchNorm ? normalizeColumns(scores, this.eps) : null;
      pre = ddZeros(scores.rows, scores.cols);
      for (let j = 0; j < scores.cols; j++) this.writePreActivationColumn(m + 1, j, scores, normalized, pre, this.gammaOf(m + 1, j), this.betaOf(m + 1, j));
      column = null;
    }
    return this.costOf(pre, squares);
  }

  /** Mean cross-entropy (per row log(1 + Σ_{j≠argmax} e^{s_j − max}) + (max − s_y), as ops.ts) + λ Σ‖W‖². */
  private costOf(logits: DdMatrix, squares: readonly DoubleDouble[]): DoubleDouble {
    const { rows: n, cols: k } = logits;
    let total = DD_ZERO;
    for (let i = 0; i < n; i++) {
      let argmax = 0;
      for (let j = 1; j < k; j++) if (ddCompare(ddAt(logits, i * k + j), ddAt(logits, i * k + argmax)) > 0) argmax = j;
      const max = ddAt(logits, i * k + argmax);
      let others = DD_ZERO;
      for (let j = 0; j < k; j++) if (j !== argmax) others = ddAdd(others, ddExp(ddSub(ddAt(logits, i * k + j), max)));
      total = ddAdd(total, ddAdd(ddLog(ddAddNumber(others, 1)), ddSub(max, ddAt(logits, i * k + this.labels[i]))));
    }
    const penalty = squares.reduce((sum, s) => ddAdd(sum, s), DD_ZERO);
    return ddAdd(ddDivNumber(total, n), ddMulNumber(penalty, this.lambda));
  }
}

function validateStep(op: string, step: number): void {
  if (!Number.isFinite(step)) throw new ReferenceArgumentError(`DoubleDoubleCost.${op}`, 'step', 'a finite number', describeValue(step));
}

interface LayerParameters {
  readonly W: Float64Array;
  readonly cols: number;
  readonly b: Float64Array;
  readonly batchNorm: boolean;
  readonly gamma: Float64Array | null;
  readonly beta: Float64Array | null;
}

interface LayerState {
  readonly input: DdMatrix;
  readonly scores: DdMatrix;
  /** ŝ; null without batch norm. */
  readonly normalized: DdMatrix | null;
  /** The ReLU's input (the logits for the last layer). */
  readonly pre: DdMatrix;
  /** pre > 0, entry by entry. */
  readonly active: Uint8Array;
}

/**
 * ŝ = (s − μ) / sqrt(σ² + ε) per column with the batch's statistics, as batchStatistics/normalize
 * in batch-norm.ts (two passes, one mean correction); only column `only` when given (the other
 * columns of the result are left 0).
 */
function normalizeColumns(scores: DdMatrix, eps: number, only?: number): DdMatrix {
  const { rows: n, cols: d } = scores;
  const out = ddZeros(n, d);
  for (let j = only ?? 0; j < (only === undefined ? d : only + 1); j++) {
    let sum = DD_ZERO;
    for (let i = 0; i < n; i++) sum = ddAdd(sum, ddAt(scores, i * d + j));
    let mean = ddDivNumber(sum, n);
    let correction = DD_ZERO;
    for (let i = 0; i < n; i++) correction = ddAdd(correction, ddSub(ddAt(scores, i * d + j), mean));
    mean = ddAdd(mean, ddDivNumber(correction, n));
    let variance = DD_ZERO;
    for (let i = 0; i < n; i++) {
      const deviation = ddSub(ddAt(scores, i * d + j), mean);
      variance = ddAdd(variance, ddMul(deviation, deviation));
    }
    const invStd = ddDiv(DD_ONE, ddSqrt(ddAddNumber(ddDivNumber(variance, n), eps)));
    for (let i = 0; i < n; i++) ddSet(out, i * d + j, ddMul(ddSub(ddAt(scores, i * d + j), mean), invStd));
  }
  return out;
}

function positive(m: DdMatrix): Uint8Array {
  // A normalized double-double is positive exactly when its hi part is.
  return Uint8Array.from(m.hi, (v) => (v > 0 ? 1 : 0));
}

function relu(m: DdMatrix): DdMatrix {
  const out = ddZeros(m.rows, m.cols);
  for (let k = 0; k < m.hi.length; k++)
    if (m.hi[k] > 0) {
      out.hi[k] = m.hi[k];
      out.lo[k] = m.lo[k];
    }
  return out;
}

/** Does any entry (of `column` only, when given) have another sign than in `active`? */
function changedSign(pre: DdMatrix, active: Uint8Array, column: number | null): boolean {
  for (let r = 0; r < pre.rows; r++)
    for (let j = column ?? 0; j < (column === null ? pre.cols : column + 1); j++) {
      const k = r * pre.cols + j;
      if ((pre.hi[k] > 0 ? 1 : 0) !== active[k]) return true;
    }
  return false;
}
