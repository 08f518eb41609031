import type * as Reference from '@bnmlp/reference';

/*
The network of a case, forward and backward, with one switch per place where a known mistake (or a
convention) changes the math. With CORRECT every switch is in its right position and the results
equal @bnmlp/reference's forward/costAndGradients exactly (model.test.ts checks that): the same
reference ops (linearForward, batchStatistics, normalize, scaleShiftForward/Backward,
batchNormBackward, reluBackward, crossEntropyBackward, l2Penalty) run in the same order. Each
catalogue entry (catalogue.ts) turns exactly one switch; the comments below say which line of the
correct math each position alters.

The reference is a devDependency of @bnmlp/cli, loaded when a diagnose command runs, so every
function takes the module as its first argument.
*/

export type ReferenceModule = typeof Reference;
export type Matrix = Reference.Matrix;
export type Network = Reference.Network;

export interface Knobs {
  /**
   * Which statistics batch norm normalizes with. Correct: 'batch' (μ, σ² of this batch, recomputed
   * on every forward). 'running': the stored running averages (inference mode). 'frozen': the
   * statistics of the unperturbed batch, computed once. 'update-running': each forward first moves
   * the running averages, avg ← α·avg + (1 − α)·batch, then normalizes with them.
   */
  readonly statistics: 'batch' | 'running' | 'frozen' | 'update-running';
  /** σ² = (1/n) Σ (s − μ)² (correct, 'biased') or 1/(n − 1) ('unbiased'). */
  readonly variance: 'biased' | 'unbiased';
  /** ŝ = (s − μ)/sqrt(σ² + ε) (correct, 'inside') or (s − μ)/(sqrt(σ²) + ε) ('outside'). */
  readonly epsPlacement: 'inside' | 'outside';
  /** ε; null: the case's. */
  readonly eps: number | null;
  /** J's data term: mean cross-entropy over the batch (correct) or the sum. */
  readonly loss: 'mean' | 'sum';
  /** J's penalty: penalty·λ·Σ‖W‖² (correct: 1; the λ/2 convention: 0.5). */
  readonly penalty: number;
  /** BN backward: ∂J/∂s = (1/σ̃)(g − mean(g) − ŝ·mean(g⊙ŝ)) ('full'), without mean(g), or without ŝ·mean(g⊙ŝ). */
  readonly bnTerms: 'full' | 'drop-mean' | 'drop-xhat';
  /** ReLU backward: g ⊙ 1[input of the ReLU > 0] (correct), no mask, or the mask of the BN input s. */
  readonly reluMask: 'relu-input' | 'none' | 'bn-input';
  /** ∂J/∂γ = Σᵢ ∂J/∂s̃ᵢ ⊙ ŝᵢ (correct) or Σᵢ ∂J/∂s̃ᵢ. */
  readonly dGamma: 'dy-xhat' | 'dy';
  /** ∂J/∂γ and ∂J/∂β exchanged. */
  readonly swapGammaBeta: boolean;
  /** ∂(penalty·λ‖W‖²)/∂W = l2Factor·λ·W; correct: 2·penalty. */
  readonly l2Factor: number;
  /** ∂J/∂logits = (P − Y)/n (correct for the mean loss) or P − Y. */
  readonly lossGradient: 'mean' | 'sum';
  /** The bias before a training-mode BN: ∂J/∂b = 0 (correct) or Σᵢ ∂J/∂s̃ᵢ (taken before the BN backward). */
  readonly biasBeforeBn: 'zero' | 'upstream';
}

export const CORRECT: Knobs = {
  statistics: 'batch',
  variance: 'biased',
  epsPlacement: 'inside',
  eps: null,
  loss: 'mean',
  penalty: 1,
  bnTerms: 'full',
  reluMask: 'relu-input',
  dGamma: 'dy-xhat',
  swapGammaBeta: false,
  l2Factor: 2,
  lossGradient: 'mean',
  biasBeforeBn: 'zero',
};

export interface BnStatistics {
  readonly mean: Float64Array;
  readonly variance: Float64Array;
}

/** What a stateful forward reads and writes besides the network. */
export interface ForwardState {
  /** statistics 'frozen': per layer (null without BN). */
  readonly frozen?: readonly (BnStatistics | null)[];
  /** statistics 'update-running': the running averages, moved in place by every forward. */
  readonly running?: (BnStatistics | null)[];
}

export interface BnCache {
  readonly mean: Float64Array;
  /** The variance as used: sqrt(variance + ε) is the divisor σ̃ actually applied. */
  readonly variance: Float64Array;
  readonly normalized: Matrix;
}

export interface LayerCache {
  readonly input: Matrix;
  readonly scores: Matrix;
  readonly bn: BnCache | null;
  readonly preActivation: Matrix;
}

export interface ForwardResult {
  readonly layers: LayerCache[];
  readonly logits: Matrix;
  readonly probs: Matrix;
}

export function epsOf(net: Network, knobs: Knobs): number {
  return knobs.eps ?? net.config.eps;
}

export function forward(ref: ReferenceModule, net: Network, x: Matrix, knobs: Knobs = CORRECT, state: ForwardState = {}): ForwardResult {
  const eps = epsOf(net, knobs);
  const alpha = net.config.runningAverageKeep;
  const caches: LayerCache[] = [];
  let h = x;
  net.layers.forEach((layer, l) => {
    const scores = ref.linearForward(h, layer.W, layer.b);
    let bn: BnCache | null = null;
    let preActivation = scores;
    if (layer.bn) {
      let stats: BnStatistics;
      switch (knobs.statistics) {
        case 'batch':
          stats = ref.batchStatistics(scores);
          break;
        case 'running':
          // Alters μ, σ²: the stored running averages instead of this batch's statistics.
          stats = { mean: Float64Array.from(layer.bn.runningMean), variance: Float64Array.from(layer.bn.runningVar) };
          break;
        case 'frozen': {
          // Alters μ, σ²: the unperturbed batch's, held fixed while parameters are perturbed.
          const frozen = state.frozen?.[l];
          if (!frozen) throw new Error(`frozen statistics missing for layer ${l + 1}`);
          stats = frozen;
          break;
        }
        case 'update-running': {
          // Alters μ, σ²: avg ← α·avg + (1 − α)·batch first, then the moved averages are used.
          const running = state.running?.[l];
          if (!running) throw new Error(`running state missing for layer ${l + 1}`);
          const batch = ref.batchStatistics(scores);
          for (let j = 0; j < batch.mean.length; j++) {
            running.mean[j] = alpha * running.mean[j] + (1 - alpha) * batch.mean[j];
            running.variance[j] = alpha * running.variance[j] + (1 - alpha) * batch.variance[j];
          }
          stats = { mean: Float64Array.from(running.mean), variance: Float64Array.from(running.variance) };
          break;
        }
      }
      let variance = stats.variance;
      // Alters σ² = (1/n)Σ(s − μ)² into 1/(n − 1): the sample variance (MATLAB's var, numpy's ddof=1).
      if (knobs.variance === 'unbiased') variance = variance.map((v) => (v * scores.rows) / (scores.rows - 1));
      // Alters σ̃ = sqrt(σ² + ε) into sqrt(σ²) + ε, through the variance the reference's normalize and
      // batchNormBackward read: sqrt(v' + ε) = sqrt(σ²) + ε for v' = (sqrt(σ²) + ε)² − ε.
      if (knobs.epsPlacement === 'outside') variance = variance.map((v) => (Math.sqrt(v) + eps) ** 2 - eps);
      const normalized = ref.normalize(scores, stats.mean, variance, eps);
      bn = { mean: stats.mean, variance, normalized };
      preActivation = ref.scaleShiftForward(normalized, layer.bn.gamma, layer.bn.beta);
    }
    caches.push({ input: h, scores, bn, preActivation });
    if (l < net.layers.length - 1) h = ref.reluForward(preActivation);
  });
  const logits = caches[caches.length - 1].preActivation;
  return { layers: caches, logits, probs: ref.softmax(logits) };
}

/** J = (mean or sum) cross-entropy + penalty·λ·Σ‖W‖². */
export function cost(ref: ReferenceModule, net: Network, result: ForwardResult, labels: ArrayLike<number>, lambda: number, knobs: Knobs = CORRECT): number {
  const mean = ref.crossEntropyForward(result.logits, labels);
  // Alters the data term: Σ over the batch instead of the mean (a convention).
  const data = knobs.loss === 'sum' ? mean * result.logits.rows : mean;
  return data + knobs.penalty * ref.l2Penalty(net.layers.map((layer) => layer.W), lambda);
}

/** The Note's ∂J/∂sᵢ = (1/σ̃)(gᵢ − mean(g) − ŝᵢ·mean(g⊙ŝ)) with one term left out. */
function batchNormBackwardWithout(g: Matrix, bn: BnCache, eps: number, dropped: 'mean' | 'xhat'): Matrix {
  const { rows: n, cols: d } = g;
  const xhat = bn.normalized.data;
  const out = { rows: n, cols: d, data: new Float64Array(n * d) };
  for (let j = 0; j < d; j++) {
    let meanG = 0;
    let meanGXhat = 0;
    for (let i = 0; i < n; i++) {
      meanG += g.data[i * d + j];
      meanGXhat += g.data[i * d + j] * xhat[i * d + j];
    }
    meanG /= n;
    meanGXhat /= n;
    const invStd = 1 / Math.sqrt(bn.variance[j] + eps);
    for (let i = 0; i < n; i++) {
      const k = i * d + j;
      // 'mean': the −mean(g) term (from ∂μ/∂s) is missing; 'xhat': the −ŝ·mean(g⊙ŝ) term (from ∂σ²/∂s) is missing.
      out.data[k] = invStd * (dropped === 'mean' ? g.data[k] - xhat[k] * meanGXhat : g.data[k] - meanG);
    }
  }
  return out;
}

/** Gradients by parameter name (W1, b1, gamma1, beta1, …; W row-major dIn × dOut) from a 'batch'-statistics forward. */
export function backward(ref: ReferenceModule, net: Network, result: ForwardResult, labels: ArrayLike<number>, lambda: number, knobs: Knobs = CORRECT): Map<string, Float64Array> {
  const eps = epsOf(net, knobs);
  const k = net.layers.length;
  const byLayer: Array<{ W: Float64Array; b: Float64Array; gamma: Float64Array | null; beta: Float64Array | null }> = new Array(k);
  let g = ref.crossEntropyBackward(result.probs, labels);
  // Alters ∂J/∂logits = (P − Y)/n into P − Y: not divided by the batch size.
  if (knobs.lossGradient === 'sum') g = { rows: g.rows, cols: g.cols, data: g.data.map((v) => v * g.rows) };
  for (let l = k - 1; l >= 0; l--) {
    const layer = net.layers[l];
    const cache = result.layers[l];
    if (l < k - 1) {
      // Alters g ⊙ 1[s̃ > 0]: no mask at all, or the mask of the BN input s instead of the ReLU's input s̃.
      if (knobs.reluMask === 'relu-input') g = ref.reluBackward(g, cache.preActivation);
      else if (knobs.reluMask === 'bn-input') g = ref.reluBackward(g, cache.scores);
    }
    let gamma: Float64Array | null = null;
    let beta: Float64Array | null = null;
    const upstream = g;
    if (layer.bn && cache.bn) {
      const ss = ref.scaleShiftBackward(g, cache.bn.normalized, layer.bn.gamma);
      // Alters ∂J/∂γ = Σᵢ ∂J/∂s̃ᵢ ŝᵢ into Σᵢ ∂J/∂s̃ᵢ (the ŝ factor forgotten).
      let dGamma = knobs.dGamma === 'dy' ? Float64Array.from(ss.dBeta) : ss.dGamma;
      let dBeta = ss.dBeta;
      // Alters which array is which: ∂J/∂γ reported as ∂J/∂β and the other way round.
      if (knobs.swapGammaBeta) [dGamma, dBeta] = [dBeta, dGamma];
      gamma = layer.bn.gamma ? dGamma : null;
      beta = layer.bn.beta ? dBeta : null;
      g = knobs.bnTerms === 'full' ? ref.batchNormBackward(ss.dXhat, cache.bn, eps) : batchNormBackwardWithout(ss.dXhat, cache.bn, eps, knobs.bnTerms === 'drop-mean' ? 'mean' : 'xhat');
    }
    const { dW, db, dX } = ref.linearBackward(g, cache.input, layer.W);
    // Alters 2λW (the gradient of λ‖W‖²) into l2Factor·λW.
    for (let i = 0; i < dW.data.length; i++) dW.data[i] += knobs.l2Factor * lambda * layer.W.data[i];
    let bias = db;
    if (layer.bn) {
      // Correct: exactly 0 (Note [BN backward through batch statistics]). Alters it into Σᵢ ∂J/∂s̃ᵢ,
      // the sum of the gradient arriving at the BN layer, as if the bias came after it.
      if (knobs.biasBeforeBn === 'zero') bias = db.fill(0);
      else {
        bias = new Float64Array(upstream.cols);
        for (let i = 0; i < upstream.rows; i++) for (let j = 0; j < upstream.cols; j++) bias[j] += upstream.data[i * upstream.cols + j];
      }
    }
    byLayer[l] = { W: dW.data, b: bias, gamma, beta };
    g = dX;
  }
  const out = new Map<string, Float64Array>();
  byLayer.forEach((grads, l) => {
    out.set(`W${l + 1}`, grads.W);
    out.set(`b${l + 1}`, grads.b);
    if (grads.gamma) out.set(`gamma${l + 1}`, grads.gamma);
    if (grads.beta) out.set(`beta${l + 1}`, grads.beta);
  });
  return out;
}

export function gradients(ref: ReferenceModule, net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, knobs: Knobs = CORRECT): Map<string, Float64Array> {
  return backward(ref, net, forward(ref, net, x, knobs), labels, lambda, knobs);
}

/** Per hidden unit and row, whether the ReLU's input is > 0. */
function reluSigns(result: ForwardResult): Uint8Array {
  const hidden = result.layers.slice(0, -1);
  const out = new Uint8Array(hidden.reduce((n, c) => n + c.preActivation.data.length, 0));
  let k = 0;
  for (const c of hidden) for (const v of c.preActivation.data) out[k++] = v > 0 ? 1 : 0;
  return out;
}

function sameSigns(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface DifferenceOptions {
  readonly h: number;
  readonly knobs?: Knobs;
  /** Emulate a float32 program: parameters and X rounded to float32, θ ± h rounded, every J rounded. */
  readonly float32?: boolean;
  /** Entries to evaluate per parameter (default all); order within the check is always case order. */
  readonly entries?: ReadonlyMap<string, readonly number[]>;
}

export interface Differences {
  readonly h: number;
  /** J at the unperturbed parameters (before any perturbation; for 'update-running' not evaluated: NaN). */
  readonly base: number;
  readonly plus: Map<string, Float64Array>;
  readonly minus: Map<string, Float64Array>;
  /** 1 where the ±h evaluations changed a ReLU's sign (a kink: the quotient is not a derivative there). */
  readonly kink: Map<string, Uint8Array>;
  /** Which entries were evaluated (others are NaN in plus/minus). */
  readonly evaluated: Map<string, Uint8Array>;
}

/**
 * J(θᵢ ± h) for every entry, parameter by parameter in case order (W1, b1, gamma1, beta1, W2, …)
 * and row-major within a parameter (= MATLAB's column-major order of the transposed DD2424 W), on a
 * private copy of the network. Statistics per `knobs.statistics`; 'update-running' carries the moved
 * running averages from one evaluation to the next, starting from the network's.
 */
export function differences(ref: ReferenceModule, net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, options: DifferenceOptions): Differences {
  const knobs = options.knobs ?? CORRECT;
  const work = ref.cloneNetwork(net);
  const round = options.float32 ? Math.fround : (v: number) => v;
  let input = x;
  if (options.float32) {
    for (const p of ref.parameters(work)) p.values.set(p.values.map(Math.fround));
    input = { rows: x.rows, cols: x.cols, data: x.data.map(Math.fround) };
  }
  const state: ForwardState = {
    frozen: knobs.statistics === 'frozen' ? forward(ref, work, input, CORRECT).layers.map((c) => (c.bn ? { mean: c.bn.mean, variance: c.bn.variance } : null)) : undefined,
    running: knobs.statistics === 'update-running' ? work.layers.map((layer) => (layer.bn ? { mean: Float64Array.from(layer.bn.runningMean), variance: Float64Array.from(layer.bn.runningVar) } : null)) : undefined,
  };
  const evaluate = () => {
    const result = forward(ref, work, input, knobs, state);
    return { cost: round(cost(ref, work, result, labels, lambda, knobs)), signs: reluSigns(result) };
  };
  const stateful = knobs.statistics === 'update-running';
  const base = stateful ? { cost: NaN, signs: new Uint8Array(0) } : evaluate();
  const plus = new Map<string, Float64Array>();
  const minus = new Map<string, Float64Array>();
  const kink = new Map<string, Uint8Array>();
  const evaluated = new Map<string, Uint8Array>();
  for (const p of ref.parameters(work)) {
    const n = p.values.length;
    const up = new Float64Array(n).fill(NaN);
    const down = new Float64Array(n).fill(NaN);
    const kinks = new Uint8Array(n);
    const done = new Uint8Array(n);
    const list = options.entries?.get(p.name) ?? Array.from({ length: n }, (_, i) => i);
    for (const i of list) {
      const original = p.values[i];
      p.values[i] = round(original + options.h);
      const a = evaluate();
      p.values[i] = round(original - options.h);
      const b = evaluate();
      p.values[i] = original;
      up[i] = a.cost;
      down[i] = b.cost;
      done[i] = 1;
      if (!stateful && (!sameSigns(a.signs, base.signs) || !sameSigns(b.signs, base.signs))) kinks[i] = 1;
    }
    plus.set(p.name, up);
    minus.set(p.name, down);
    kink.set(p.name, kinks);
    evaluated.set(p.name, done);
  }
  return { h: options.h, base: base.cost, plus, minus, kink, evaluated };
}

export type Scheme = 'centered' | 'forward' | 'backward';

/** The numeric gradient a scheme gives from the evaluations: (J+ − J−)/2h, (J+ − J)/h or (J − J−)/h. */
export function quotient(d: Differences, name: string, scheme: Scheme): Float64Array {
  const up = d.plus.get(name)!;
  const down = d.minus.get(name)!;
  return up.map((_, i) => (scheme === 'centered' ? (up[i] - down[i]) / (2 * d.h) : scheme === 'forward' ? (up[i] - d.base) / d.h : (d.base - down[i]) / d.h));
}
