import type { NdArray } from './arrays.js';
import type { CaseConfig } from './case.js';
import { CASE_CONVENTION, COMMON_STEPS, KINK_STEP_UNKNOWN_H, conventionKnobs, type CaseLab, type ConventionSetting } from './lab.js';
import { CORRECT, quotient, type Differences, type Knobs, type Scheme } from './model.js';
import type { RawGradient, Side } from './submission.js';

/*
The catalogue of known causes. Each entry is one mistake (or one convention) as a small variant of
the correct computation: a switch of model.ts (forward or backward), a different numeric checker
(statistics, scheme, step, precision), or a different relative error. For a wrong side of someone's
gradients, an entry *matches* when every array they gave on that side agrees with the entry's
variant within the match tolerance (in units of each parameter's scale) and the agreement explains
their error (the mismatch is at most a tenth of their error against the exact gradient).

`simulate` says what a program with the mistake would hand in: the tests export it in all three
formats and check that the diagnosis names this entry first and no other; `bnmlp diagnose example`
writes it for a look at a diagnosis.
*/

export type CatalogueSide = Side | 'check';

export interface MatchContext {
  readonly lab: CaseLab;
  readonly convention: ConventionSetting;
  /** The step their file states, or null. */
  readonly h: number | null;
  readonly side: Side;
  /** Their arrays of this side in our row-sample layout, by our parameter name (those whose names and shapes fit). */
  readonly theirs: ReadonlyMap<string, Float64Array>;
  /** All their arrays of this side as read (for causes that look at names and shapes). */
  readonly raw: readonly RawGradient[];
  /** The exact gradient under the convention in force. */
  readonly exact: ReadonlyMap<string, Float64Array>;
  /** Entries left out of numeric comparisons (ReLU kinks at their step), by parameter. */
  readonly exclude: ReadonlyMap<string, Uint8Array> | null;
  /** Their largest error against `exact`, per parameter, in units of scale. */
  readonly error: ReadonlyMap<string, number>;
  readonly matchTolerance: number;
  /** Their analytic and numeric arrays (our layout) and reported relative errors, for the 'check' side. */
  readonly analytic: ReadonlyMap<string, Float64Array>;
  readonly numeric: ReadonlyMap<string, Float64Array>;
  readonly relerr: ReadonlyMap<string, number>;
}

export interface Candidate {
  /** What was varied, when more than one variant is tried ('h = 1e-3, forward difference'). */
  readonly detail: string | null;
  /** By our parameter name; NaN entries are not compared (not evaluated). */
  readonly arrays: ReadonlyMap<string, Float64Array>;
  /** Entries not compared (kinks of the variant's own function when the step is unknown). */
  readonly exclude?: ReadonlyMap<string, Uint8Array>;
}

export interface CauseMatch {
  readonly name: string;
  readonly side: CatalogueSide;
  /** Largest |theirs − variant| / scale over their arrays (0 for causes judged by a signature). */
  readonly mismatch: number;
  readonly detail: string | null;
  /** Their arrays this cause explains (all of the side for a full match). */
  readonly parameters: readonly string[];
  /** Extra words for this case (e.g. the convention twin of a bug). */
  readonly note?: string;
}

export interface Simulated {
  /** By the name a user would write (W1, or W0 with 0-based names), in our row-sample layout. */
  readonly analytic: Map<string, NdArray>;
  readonly numeric?: Map<string, NdArray>;
  readonly h?: number;
  readonly relerr?: Map<string, number>;
}

export interface CatalogueEntry {
  readonly name: string;
  readonly kind: 'mistake' | 'convention';
  /** Where it shows: on their analytic arrays, their numeric ones, or their checker's verdict. */
  readonly sides: readonly CatalogueSide[];
  readonly title: string;
  /** One line: what goes wrong. */
  readonly explanation: string;
  /** One line: the fix. */
  readonly fix: string;
  /** Which line of the correct math the variant changes. */
  readonly alters: string;
  readonly applies: (config: CaseConfig) => boolean;
  readonly candidates?: (ctx: MatchContext) => Candidate[];
  /** Causes judged otherwise than by comparing arrays. */
  readonly match?: (ctx: MatchContext) => CauseMatch | null;
  readonly simulate: (lab: CaseLab) => Simulated;
}

/** The step of every simulated numeric gradient (the DD2424 course's). */
export const SIMULATED_STEP = 1e-5;

const withKnobs = (ctx: Pick<MatchContext, 'convention'>, knobs: Partial<Knobs>): Knobs => ({ ...conventionKnobs(ctx.convention), ...knobs });

function arrays(lab: CaseLab, values: ReadonlyMap<string, Float64Array>, rename: (name: string) => string = (n) => n): Map<string, NdArray> {
  const out = new Map<string, NdArray>();
  for (const spec of lab.specs) {
    const data = values.get(spec.name);
    if (data) out.set(rename(spec.name), { shape: spec.shape, data });
  }
  return out;
}

function quotients(lab: CaseLab, d: Differences, scheme: Scheme): Map<string, Float64Array> {
  return new Map(lab.specs.map((s) => [s.name, quotient(d, s.name, scheme)]));
}

/** Correct centered differences at the simulated step: what a right checker hands in. */
function rightNumeric(lab: CaseLab, knobs: Knobs = CORRECT): Map<string, NdArray> {
  return arrays(lab, quotients(lab, lab.differences({ h: SIMULATED_STEP, knobs }), 'centered'));
}

/** A backward-pass mistake: wrong analytic arrays, right numeric ones. */
function analyticMistake(knobs: Partial<Knobs>): Pick<CatalogueEntry, 'sides' | 'candidates' | 'simulate'> {
  return {
    sides: ['analytic'],
    candidates: (ctx) => (ctx.side === 'analytic' ? [{ detail: null, arrays: ctx.lab.gradients(withKnobs(ctx, knobs)) }] : []),
    simulate: (lab) => ({ analytic: arrays(lab, lab.gradients({ ...CORRECT, ...knobs })), numeric: rightNumeric(lab), h: SIMULATED_STEP }),
  };
}

/** The numeric gradient of J under `knobs` (the variant's own function), at their step or, unknown, at 1e-4 without its kinks. */
function numericOf(ctx: MatchContext, knobs: Partial<Knobs>): Candidate {
  const h = ctx.h ?? KINK_STEP_UNKNOWN_H;
  const d = ctx.lab.differences({ h, knobs: withKnobs(ctx, knobs) });
  return { detail: null, arrays: quotients(ctx.lab, d, 'centered'), exclude: ctx.h === null ? d.kink : undefined };
}

/** A forward-pass mistake: the analytic arrays come from the changed forward (and the usual backward formula); so do the numeric ones. */
function forwardMistake(knobs: Partial<Knobs>): Pick<CatalogueEntry, 'sides' | 'candidates' | 'simulate'> {
  return {
    sides: ['analytic', 'numeric'],
    candidates: (ctx) => [ctx.side === 'analytic' ? { detail: null, arrays: ctx.lab.gradients(withKnobs(ctx, knobs)) } : numericOf(ctx, knobs)],
    simulate: (lab) => ({ analytic: arrays(lab, lab.gradients({ ...CORRECT, ...knobs })), numeric: rightNumeric(lab, { ...CORRECT, ...knobs }), h: SIMULATED_STEP }),
  };
}

/** A checker mistake in the function it differentiates: right analytic arrays, numeric ones of the wrong function. */
function numericFunctionMistake(knobs: Partial<Knobs>): Pick<CatalogueEntry, 'sides' | 'candidates' | 'simulate'> {
  return {
    sides: ['numeric'],
    candidates: (ctx) => (ctx.side === 'numeric' ? [numericOf(ctx, knobs)] : []),
    simulate: (lab) => ({ analytic: arrays(lab, lab.gradients()), numeric: rightNumeric(lab, { ...CORRECT, ...knobs }), h: SIMULATED_STEP }),
  };
}

const stepsOf = (ctx: MatchContext, filter: (h: number) => boolean = () => true): number[] => (ctx.h !== null ? [ctx.h] : [...COMMON_STEPS]).filter(filter);
const sci = (v: number) => v.toExponential(0).replace('e+', 'e');

const hasBn = (c: CaseConfig) => c.batchNorm && c.layers > 1;
const hasAffine = (c: CaseConfig) => hasBn(c) && c.affine;
const always = () => true;

/** A numeric gradient's entries are multiples of one quantum q: q when ≥ 95 % of them are (to 1e-3 of q). */
function latticeQuantum(values: readonly number[]): number | null {
  const nonzero = values.filter((v) => v !== 0).map(Math.abs);
  if (nonzero.length < Math.max(3, values.length * 0.05)) return null;
  const smallest = Math.min(...nonzero);
  for (const divisor of [1, 2, 3, 4]) {
    const q = smallest / divisor;
    const on = values.filter((v) => {
      const k = v / q;
      return Math.abs(k - Math.round(k)) <= 1e-3 * Math.max(1, Math.abs(k) * 1e-3);
    }).length;
    if (on >= 0.95 * values.length && Math.max(...nonzero) / q < 1e7) return q;
  }
  return null;
}

function ulp(value: number, bits: 24 | 53): number {
  const v = Math.max(Math.abs(value), Number.MIN_VALUE);
  return 2 ** (Math.floor(Math.log2(v)) - (bits - 1));
}

/** |a − n| / (|a| + |n|): the relative error with no floor (0/0 entries skipped). */
export function floorlessRelativeError(a: ArrayLike<number>, n: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const denominator = Math.abs(a[i]) + Math.abs(n[i]);
    if (denominator > 0) max = Math.max(max, Math.abs(a[i] - n[i]) / denominator);
  }
  return max;
}

/** A reported relative error above this, for a parameter whose analytic and numeric arrays are both right, is a wrong verdict. */
export const RELERR_LIMIT = 1e-4;

export const CATALOGUE: readonly CatalogueEntry[] = [
  // ---- numeric side: the checker differentiates the wrong function, or differentiates badly ----
  {
    name: 'running-statistics',
    kind: 'mistake',
    title: 'running statistics in the perturbed forward pass',
    explanation:
      "the numeric gradient's forward passes normalize with the running averages (inference mode) instead of each perturbed batch's own mean and variance, so the check differentiates another function than the training cost (the model report's own bug)",
    fix: 'evaluate J in training mode inside the check: recompute the batch mean and variance on every perturbed forward pass',
    alters: 'μ, σ² in ŝ = (s − μ)/sqrt(σ² + ε): the stored running averages instead of the batch statistics',
    applies: hasBn,
    ...numericFunctionMistake({ statistics: 'running' }),
  },
  {
    name: 'frozen-batch-statistics',
    kind: 'mistake',
    title: 'batch statistics computed once, not per perturbation',
    explanation: 'the check reuses the mean and variance of the unperturbed batch for every perturbation, so it misses how the statistics move with the parameters',
    fix: 'recompute μ and σ² of the batch inside every perturbed forward pass',
    alters: 'μ, σ² in ŝ = (s − μ)/sqrt(σ² + ε): held at the unperturbed batch values',
    applies: hasBn,
    ...numericFunctionMistake({ statistics: 'frozen' }),
  },
  {
    name: 'running-averages-updated',
    kind: 'mistake',
    title: 'running averages updated during the check',
    explanation:
      "each forward pass of the check moves the running averages (avg ← α·avg + (1 − α)·batch) and normalizes with them, so every evaluation sees averages left behind by the one before (entries in case order, +h then −h)",
    fix: 'keep the forward passes of a gradient check free of side effects: batch statistics, running averages untouched (update them in the training step only)',
    alters: 'μ, σ²: the running averages, moved by every forward pass, instead of the batch statistics',
    applies: hasBn,
    sides: ['numeric'],
    // The averages carry over from entry to entry: only a check of every entry, in order, reproduces them.
    candidates: (ctx) =>
      ctx.side !== 'numeric' || ctx.lab.entries !== undefined
        ? []
        : stepsOf(ctx).map((h) => ({
            detail: `h = ${sci(h)}`,
            arrays: quotients(ctx.lab, ctx.lab.differences({ h, knobs: withKnobs(ctx, { statistics: 'update-running' }) }), 'centered'),
          })),
    simulate: (lab) => ({
      analytic: arrays(lab, lab.gradients()),
      numeric: arrays(lab, quotients(lab, lab.differences({ h: SIMULATED_STEP, knobs: { ...CORRECT, statistics: 'update-running' } }), 'centered')),
      h: SIMULATED_STEP,
    }),
  },
  {
    name: 'one-sided-difference',
    kind: 'mistake',
    title: 'one-sided difference',
    explanation: '(J(θ + h) − J(θ))/h or (J(θ) − J(θ − h))/h has an error of order h (h/2·J″), not h²',
    fix: 'use centered differences (J(θ + h) − J(θ − h))/(2h)',
    alters: 'the quotient (J(θ + h) − J(θ − h))/(2h): a one-sided one',
    applies: always,
    sides: ['numeric'],
    candidates: (ctx) =>
      ctx.side !== 'numeric'
        ? []
        : stepsOf(ctx).flatMap((h) => {
            const d = ctx.lab.differences({ h, knobs: conventionKnobs(ctx.convention) });
            return (['forward', 'backward'] as const).map((scheme) => ({ detail: `${scheme} difference, h = ${sci(h)}`, arrays: quotients(ctx.lab, d, scheme) }));
          }),
    simulate: (lab) => ({ analytic: arrays(lab, lab.gradients()), numeric: arrays(lab, quotients(lab, lab.differences({ h: 1e-3 }), 'forward')), h: 1e-3 }),
  },
  {
    name: 'step-too-large',
    kind: 'mistake',
    title: 'h too large',
    explanation: "a centered difference with a step this large has a truncation error of order h² and steps across ReLU kinks",
    fix: 'use h ≈ 1e-5 to 1e-6 in float64, and leave out entries whose ±h step flips a ReLU',
    alters: 'h in (J(θ + h) − J(θ − h))/(2h)',
    applies: always,
    sides: ['numeric'],
    candidates: (ctx) =>
      ctx.side !== 'numeric'
        ? []
        : stepsOf(ctx, (h) => h >= 1e-4).map((h) => ({ detail: `h = ${sci(h)}`, arrays: quotients(ctx.lab, ctx.lab.differences({ h, knobs: conventionKnobs(ctx.convention) }), 'centered') })),
    simulate: (lab) => ({ analytic: arrays(lab, lab.gradients()), numeric: arrays(lab, quotients(lab, lab.differences({ h: 1e-1 }), 'centered')), h: 1e-1 }),
  },
  {
    name: 'step-too-small',
    kind: 'mistake',
    title: 'h too small for the precision',
    explanation:
      "your numeric gradients are multiples of one quantum, the spacing of J's floating-point values over the step: rounding of J, not the function, decides them (the step is too small for the precision of your cost, typically float32)",
    fix: 'compute the cost in float64 and use h ≈ 1e-5 (float32 cannot resolve J(θ + h) − J(θ − h) for small h)',
    alters: 'the precision of J in (J(θ + h) − J(θ − h))/(2h): rounding ulp(J)/(2h) exceeds the gradient',
    applies: always,
    sides: ['numeric'],
    match: (ctx) => {
      if (ctx.side !== 'numeric') return null;
      const values: number[] = [];
      for (const [name, t] of ctx.theirs) {
        const skip = ctx.exclude?.get(name);
        t.forEach((v, i) => {
          if (!skip?.[i]) values.push(v);
        });
      }
      const q = latticeQuantum(values);
      if (q === null) return null;
      const J = ctx.lab.c.cost;
      const h32 = ulp(J, 24) / (2 * q);
      const h64 = ulp(J, 53) / (2 * q);
      const stated = ctx.h === null ? '' : `; your h = ${sci(ctx.h)}`;
      return {
        name: 'step-too-small',
        side: 'numeric',
        mismatch: 0,
        detail: `entries are multiples of ${q.toExponential(2)}: ulp(J)/(2h) for a float32 J with h ≈ ${sci(h32)}, or a float64 J with h ≈ ${sci(h64)}${stated}`,
        parameters: [...ctx.theirs.keys()],
      };
    },
    simulate: (lab) => ({ analytic: arrays(lab, lab.gradients()), numeric: arrays(lab, quotients(lab, lab.differences({ h: SIMULATED_STEP, float32: true }), 'centered')), h: SIMULATED_STEP }),
  },
  {
    name: 'no-floor-on-exact-zero',
    kind: 'mistake',
    title: 'relative error without a floor on exact zeros',
    explanation:
      'your checker divides by |a| + |n| with no floor: the bias before BN has exact gradient 0 and a numeric gradient of pure rounding noise, which scores 1.0 although both are right',
    fix: 'excuse differences within the rounding noise of the difference (≈ 1e-8 and below), or divide by max(|a| + |n|, 1e-8), and expect exactly 0 for a bias before BN',
    alters: 'the relative error |a − n|/max(|a| + |n|, floor): the floor left out',
    applies: hasBn,
    sides: ['check'],
    match: (ctx) => {
      const explained: string[] = [];
      let mismatch = 0;
      for (const [name, reported] of ctx.relerr) {
        const a = ctx.analytic.get(name);
        const n = ctx.numeric.get(name);
        const exact = ctx.exact.get(name);
        if (!a || !n || !exact || reported <= RELERR_LIMIT) continue;
        if (!exact.every((v) => v === 0)) return null;
        const floorless = floorlessRelativeError(a, n);
        const off = Math.abs(reported - floorless) / Math.max(floorless, 1e-12);
        if (off > 1e-3) return null;
        mismatch = Math.max(mismatch, off);
        explained.push(name);
      }
      return explained.length ? { name: 'no-floor-on-exact-zero', side: 'check', mismatch, detail: null, parameters: explained } : null;
    },
    simulate: (lab) => {
      const analytic = arrays(lab, lab.gradients());
      const numeric = rightNumeric(lab);
      return {
        analytic,
        numeric,
        h: SIMULATED_STEP,
        relerr: new Map(lab.specs.map((s) => [s.name, floorlessRelativeError(analytic.get(s.name)!.data, numeric.get(s.name)!.data)])),
      };
    },
  },
  // ---- analytic side: the backward pass ----
  {
    name: 'dropped-mean-term',
    kind: 'mistake',
    title: 'dropped mean(∂ŝ) term',
    explanation: 'the BN backward misses −mean(g): ∂J/∂s = (g − ŝ·mean(g⊙ŝ))/σ̃ ignores that μ depends on every sample',
    fix: '∂J/∂s = (g − mean(g) − ŝ·mean(g⊙ŝ))/σ̃ with g = γ·∂J/∂y (Note [BN backward through batch statistics])',
    alters: '∂J/∂s = (1/σ̃)(g − mean(g) − ŝ·mean(g⊙ŝ)): without −mean(g)',
    applies: hasBn,
    ...analyticMistake({ bnTerms: 'drop-mean' }),
  },
  {
    name: 'dropped-xhat-term',
    kind: 'mistake',
    title: 'dropped ŝ·mean(∂ŝ·ŝ) term',
    explanation: 'the BN backward misses −ŝ·mean(g⊙ŝ): ∂J/∂s = (g − mean(g))/σ̃ ignores that σ² depends on every sample',
    fix: '∂J/∂s = (g − mean(g) − ŝ·mean(g⊙ŝ))/σ̃ with g = γ·∂J/∂y (Note [BN backward through batch statistics])',
    alters: '∂J/∂s = (1/σ̃)(g − mean(g) − ŝ·mean(g⊙ŝ)): without −ŝ·mean(g⊙ŝ)',
    applies: hasBn,
    ...analyticMistake({ bnTerms: 'drop-xhat' }),
  },
  {
    name: 'eps-outside-sqrt',
    kind: 'mistake',
    title: 'ε outside the square root',
    explanation: 'BN divides by sqrt(σ²) + ε instead of sqrt(σ² + ε) (forward and backward)',
    fix: 'σ̃ = sqrt(σ² + ε) in the forward and the backward pass',
    alters: 'σ̃ = sqrt(σ² + ε): sqrt(σ²) + ε',
    applies: hasBn,
    ...forwardMistake({ epsPlacement: 'outside' }),
  },
  {
    name: 'unbiased-variance',
    kind: 'mistake',
    title: 'unbiased variance',
    explanation: "σ² divided by n − 1 (MATLAB's var, numpy's ddof=1) where BN uses the biased variance (divide by n), which the backward formula assumes",
    fix: "var(S, 1, 2) in MATLAB (or var(S, 0, 2)·(n − 1)/n), np.var(S, axis=0) in numpy (ddof=0)",
    alters: 'σ² = (1/n)Σ(s − μ)²: 1/(n − 1)',
    applies: hasBn,
    ...forwardMistake({ variance: 'unbiased' }),
  },
  {
    name: 'missing-relu-mask',
    kind: 'mistake',
    title: 'missing ReLU mask',
    explanation: 'the ReLU backward passes the gradient everywhere: g is not multiplied by 1[input > 0]',
    fix: 'g ← g ⊙ 1[s̃ > 0], s̃ the ReLU input (the BN output, or the scores without BN)',
    alters: 'g ⊙ 1[s̃ > 0]: no mask',
    applies: (c) => c.layers > 1,
    ...analyticMistake({ reluMask: 'none' }),
  },
  {
    name: 'relu-mask-wrong-tensor',
    kind: 'mistake',
    title: 'ReLU mask from the wrong tensor',
    explanation: "the ReLU mask comes from the scores before BN (s > 0) instead of the ReLU's own input s̃ = γ·ŝ + β",
    fix: 'mask with the tensor the ReLU was applied to: 1[s̃ > 0] (equivalently 1[h > 0] for its output h)',
    alters: 'g ⊙ 1[s̃ > 0]: 1[s > 0], the BN input',
    applies: hasBn,
    ...analyticMistake({ reluMask: 'bn-input' }),
  },
  {
    name: 'dgamma-without-xhat',
    kind: 'mistake',
    title: '∂γ = Σ∂y instead of Σ∂y·ŝ',
    explanation: '∂J/∂γ is summed without the ŝ factor (that sum is ∂J/∂β)',
    fix: '∂J/∂γ = Σᵢ ∂J/∂yᵢ ⊙ ŝᵢ',
    alters: '∂J/∂γ = Σᵢ ∂J/∂yᵢ ŝᵢ: Σᵢ ∂J/∂yᵢ',
    applies: hasAffine,
    ...analyticMistake({ dGamma: 'dy' }),
  },
  {
    name: 'gamma-beta-swapped',
    kind: 'mistake',
    title: '∂γ and ∂β swapped',
    explanation: '∂J/∂γ and ∂J/∂β are exchanged',
    fix: '∂J/∂γ = Σᵢ ∂J/∂yᵢ ⊙ ŝᵢ and ∂J/∂β = Σᵢ ∂J/∂yᵢ',
    alters: 'which of Σᵢ ∂J/∂yᵢ ŝᵢ and Σᵢ ∂J/∂yᵢ is ∂J/∂γ',
    applies: hasAffine,
    ...analyticMistake({ swapGammaBeta: true }),
  },
  {
    name: 'l2-gradient-lambda-w',
    kind: 'mistake',
    title: 'L2 gradient λW instead of 2λW',
    explanation: 'the penalty λ·Σ‖W‖² has gradient 2λW; λW is the gradient of (λ/2)·Σ‖W‖²',
    fix: 'add 2λW to ∂J/∂W',
    alters: '∂(λ‖W‖²)/∂W = 2λW: λW',
    applies: (c) => c.lambda > 0,
    ...analyticMistake({ l2Factor: 1 }),
  },
  {
    name: 'loss-gradient-not-divided',
    kind: 'mistake',
    title: 'loss gradient not divided by the batch size',
    explanation: '∂J/∂logits = P − Y is not divided by n, while J averages the cross-entropy over the batch',
    fix: '∂J/∂logits = (P − Y)/n',
    alters: '∂J/∂logits = (P − Y)/n: P − Y',
    applies: always,
    ...analyticMistake({ lossGradient: 'sum' }),
  },
  {
    name: 'bias-before-bn-nonzero',
    kind: 'mistake',
    title: 'nonzero gradient for the bias before BN',
    explanation: 'the bias before a BN layer gets Σᵢ ∂J/∂yᵢ, the gradient arriving at BN; but BN removes any per-unit shift, so its exact gradient is 0',
    fix: '∂J/∂b = Σᵢ ∂J/∂sᵢ after the BN backward (0 up to rounding), or set it to 0, or drop that bias',
    alters: '∂J/∂b = Σᵢ ∂J/∂sᵢ = 0: Σᵢ ∂J/∂yᵢ, taken before the BN backward',
    applies: hasBn,
    ...analyticMistake({ biasBeforeBn: 'upstream' }),
  },
  {
    name: 'layer-index-off-by-one',
    kind: 'mistake',
    title: 'layer indices off by one',
    explanation: 'your arrays are attached to the neighbouring layer: your W<l> holds the gradient of our W<l±1> (0-based names, or a loop index off by one)',
    fix: 'number layers from 1 (W1 is the first layer, applied to X) and check the loop indices of the backward pass',
    alters: 'the layer index l of ∂J/∂W_l, ∂J/∂b_l, …: l ± 1',
    applies: (c) => c.layers > 1,
    sides: ['analytic', 'numeric'],
    match: (ctx) => {
      for (const shift of [1, -1]) {
        let worst = 0;
        let ok = ctx.raw.length > 0;
        for (const g of ctx.raw) {
          const target = ctx.lab.specs.find((s) => s.kind === g.kind && s.layer === g.index + shift);
          const exact = target && ctx.exact.get(target.name);
          const data = target && orientTo(g, target);
          if (!target || !exact || !data) {
            ok = false;
            break;
          }
          const scale = ctx.lab.scale(target.name);
          const skip = ctx.side === 'numeric' ? ctx.exclude?.get(target.name) : undefined;
          for (let i = 0; i < exact.length; i++) if (!skip?.[i]) worst = Math.max(worst, Math.abs(data[i] - exact[i]) / scale);
        }
        if (ok && worst <= ctx.matchTolerance)
          return { name: 'layer-index-off-by-one', side: ctx.side, mismatch: worst, detail: `your layer l is our layer l ${shift > 0 ? '+' : '−'} 1`, parameters: ctx.raw.map((g) => g.fileName) };
      }
      return null;
    },
    simulate: (lab) => {
      const rename = (name: string) => name.replace(/\d+$/, (d) => String(Number(d) - 1));
      return { analytic: arrays(lab, lab.gradients(), rename), numeric: arrays(lab, quotients(lab, lab.differences({ h: SIMULATED_STEP }), 'centered'), rename), h: SIMULATED_STEP };
    },
  },
  // ---- conventions: their J differs from ours, consistently (not bugs) ----
  {
    name: 'sum-loss',
    kind: 'convention',
    title: 'sum instead of mean over the batch',
    explanation: 'your cost sums the cross-entropy over the batch instead of averaging it: every gradient of the data term is n times ours',
    fix: 'nothing to fix; to compare with bnmlp, divide your data term by n',
    alters: 'J = mean CE + λΣ‖W‖²: sum CE + λΣ‖W‖²',
    applies: always,
    sides: ['analytic', 'numeric'],
    simulate: (lab) => conventionSimulation(lab, { ...CASE_CONVENTION, loss: 'sum' }),
  },
  {
    name: 'half-penalty',
    kind: 'convention',
    title: 'λ/2 instead of λ',
    explanation: 'your penalty is (λ/2)·Σ‖W‖² (gradient λW) where the case uses λ·Σ‖W‖² (gradient 2λW)',
    fix: 'nothing to fix; to compare with bnmlp, use λ·Σ‖W‖² (or pass your λ as 2λ)',
    alters: 'J = mean CE + λΣ‖W‖²: mean CE + (λ/2)Σ‖W‖²',
    applies: (c) => c.lambda > 0,
    sides: ['analytic', 'numeric'],
    simulate: (lab) => conventionSimulation(lab, { ...CASE_CONVENTION, penalty: 0.5 }),
  },
  {
    name: 'eps-value',
    kind: 'convention',
    title: 'another ε',
    explanation: "your batch norm uses another ε than the case's",
    fix: "nothing to fix; to compare with bnmlp, use the case's eps",
    alters: 'ε in sqrt(σ² + ε): another value',
    applies: hasBn,
    sides: ['analytic', 'numeric'],
    simulate: (lab) => conventionSimulation(lab, { ...CASE_CONVENTION, eps: 1e-5 }),
  },
];

function conventionSimulation(lab: CaseLab, setting: ConventionSetting): Simulated {
  const knobs = conventionKnobs(setting);
  return { analytic: arrays(lab, lab.gradients(knobs)), numeric: rightNumeric(lab, knobs), h: SIMULATED_STEP };
}

/** Their gradient in the row-sample layout of `target`, or null when its shape fits neither layout (a square W is taken as given). */
function orientTo(g: RawGradient, target: { kind: string; shape: readonly number[] }): Float64Array | null {
  const [dIn, dOut] = target.kind === 'W' ? target.shape : [1, target.shape[0]];
  const size = dIn * dOut;
  if (g.data.length !== size) return null;
  if (target.kind !== 'W') return g.shape.filter((d) => d !== 1).length <= 1 ? g.data : null;
  if (g.shape.length !== 2) return null;
  if (g.shape[0] === dIn && g.shape[1] === dOut) return g.data;
  if (g.shape[0] === dOut && g.shape[1] === dIn) {
    const out = new Float64Array(size);
    for (let i = 0; i < dOut; i++) for (let j = 0; j < dIn; j++) out[j * dOut + i] = g.data[i * dIn + j];
    return out;
  }
  return null;
}

export function catalogueEntry(name: string): CatalogueEntry | undefined {
  return CATALOGUE.find((e) => e.name === name);
}

/** ε values tried for the 'eps-value' convention (those equal to the case's are skipped). */
export const EPS_CANDIDATES = [1e-5, 1e-3, 1e-8, 2 ** -52, 1e-6, 1e-4, 1e-10, 1e-12, 1e-2, 1e-1] as const;
