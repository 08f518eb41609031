import { DD_EPSILON, ddDivNumber, ddSub, ddToNumber, type DoubleDouble } from './double-double.js';
import { DoubleDoubleCost } from './double-double-model.js';
import { ReferenceArgumentError, describeValue } from './errors.js';
import type { Matrix } from './matrix.js';
import { backward, costFromForward, forward, validateBatch, type ForwardResult, type Gradients } from './model.js';
import { cloneNetwork, parameters, type Network, type ParameterRef } from './network.js';
import { createPrng, nextInt, nextNormal, type Prng } from './prng.js';
import { gradientOf } from './sgd.js';

/**
 * Gradient check by centered differences, the project's ground truth for every backward pass.
 *
 * For each checked entry θᵢ of each parameter, numeric = (J(θᵢ + h) − J(θᵢ − h)) / (2h), where J is
 * recomputed by a forward pass in training mode, so batch statistics are recomputed for every
 * perturbation (Note [BN backward through batch statistics]). The perturbations are applied to a
 * private copy of the network: the caller's parameters, running averages and PRNG are never touched.
 *
 * Per entry, with analytic a and numeric n:
 *   relative error  r = |a − n| / max(1e-8, |a| + |n|)
 *   the entry passes when r ≤ tolerance, or when |a − n| ≤ absoluteFloor. The floor is the
 *   rounding noise of the centered difference itself, ≈ ε·|J|/h; without it an exact zero (the
 *   bias before batch norm, whose true gradient is 0) compares 0 with ~1e-10 and scores r = 1.
 *   Entries that pass only by the floor are counted (`belowFloor`) and left out of the
 *   relative-error statistics; every other entry reports its true r.
 * ReLU kinks: an entry is skipped, and counted (`skippedKinks`), when its ± perturbation flips the
 * sign of any ReLU input relative to the unperturbed pass, i.e. some pre-activation lies within the
 * perturbation's reach of 0, where J is not differentiable and the difference quotient is meaningless.
 *
 * Stencils: 2 (default) is the classic two-point difference above on float64 J, truncation error
 * ~h²·J‴/6: the report's table, tolerance 1e-6.
 * 4 is its Richardson extrapolation, the five-point stencil
 *   numeric = (4·D(h) − D(2h)) / 3,  D(s) = (J(θ + s) − J(θ − s)) / (2s)
 *           = (−J(θ+2h) + 8J(θ+h) − 8J(θ−h) + J(θ−2h)) / (12h),
 * truncation ~h⁴·J⁽⁵⁾/30. A better stencil alone does not reach 1e-9 on small entries: the float64
 * rounding of J over the step (≈ 1e-16·|J|/h) swamps their difference (with h = 1e-3, 31 of the
 * report's 84 nonzero parameter rows stayed above 1e-9, up to 2.3e-7). So stencil 4 by default
 * evaluates J in double-double arithmetic (`precision`; ≈ 32 digits, DoubleDoubleCost in
 * double-double-model.ts): the same training-mode pass with batch statistics recomputed per
 * perturbation, θᵢ ± s formed exactly, rounding ≈ 1e-32·|J|/h. The step can then be small enough
 * for truncation to vanish too. Measured on the report's configurations: h = 1e-3 left up to 2.9e-8,
 * 1e-4 up to 6.5e-12, while 1e-5 and 1e-6 agree to every printed digit; on small BN networks with
 * σ²/ε down to 64, judged against the decimal oracle's gradients, 1e-5 still showed 2e-13 and 1e-6
 * only the final rounding to float64. Default step 1e-6. What remains is the float64 analytic
 * gradient's own rounding (≤ 5.4e-12 on the report's configurations), hence tolerance 1e-9: an
 * analytic error of relative size 1e-6 (r ≈ 5e-7) fails. Exact zeros (the bias before BN) get a
 * numeric 0 or ≲ 1e-25 and pass by relative error; the floor, 64·2^-104·max(1, |J|)/h, excuses
 * nothing there. `precision: 'float64'` keeps the float64 five-point stencil (default step 1e-3,
 * tolerance 1e-6) for comparison and for `numericForward`. Kinks are judged on all four passes.
 *
 * Modes: 'entries' checks entries one by one (all, or `maxEntriesPerParameter` drawn at random);
 * 'directional' checks, per parameter, `directions` random unit directions u:
 * ⟨∇J, u⟩ against (J(θ + h·u) − J(θ − h·u)) / (2h) (like PyTorch's fast gradcheck / JAX check_grads).
 */
export interface GradientCheckOptions {
  /** Step; default gradientCheckDefaults(stencil, precision).h: 1e-6, except 1e-3 for stencil 4 in float64. */
  readonly h?: number;
  /** 2: two-point centered difference (default); 4: five-point (Richardson-extrapolated) centered difference. */
  readonly stencil?: 2 | 4;
  /** Arithmetic of J on the numeric side; default 'double-double' with stencil 4, 'float64' with stencil 2. */
  readonly precision?: GradientCheckPrecision;
  /** Largest relative error accepted per entry; default gradientCheckDefaults(stencil, precision).tolerance: 1e-9 for stencil 4 in double-double, else 1e-6. */
  readonly tolerance?: number;
  /** Absolute difference always accepted; default 64·u·max(1, |J|)/h, the centered difference's own rounding noise (u: the precision's unit roundoff). */
  readonly absoluteFloor?: number;
  readonly mode?: 'entries' | 'directional';
  /** 'entries' mode: check at most this many entries per parameter, drawn at random. */
  readonly maxEntriesPerParameter?: number;
  /** 'directional' mode: directions per parameter. */
  readonly directions?: number;
  /** Seed for entry subsets and directions (a private PRNG: no caller state changes). */
  readonly seed?: number;
  /** Only these parameter names (e.g. ['W1', 'gamma1']). */
  readonly only?: readonly string[];
  /**
   * The forward pass that defines J for the numeric side; default training mode. Tests replace it
   * with a broken one (running statistics) to prove the checker rejects it. A float64 forward:
   * only with precision 'float64'.
   */
  readonly numericForward?: (net: Network, x: Matrix) => ForwardResult;
  /**
   * Analytic gradients to judge instead of this package's own backward pass, by parameter name
   * (same layout as the parameter): how @bnmlp/core's float32 gradients are checked against
   * float64 centered differences on the same weights.
   */
  readonly analytic?: Readonly<Record<string, ArrayLike<number>>>;
}

export interface WorstEntry {
  /** Row-major index into the parameter: [row, col] for W, [unit] for vectors; [direction] in directional mode. */
  readonly index: readonly number[];
  readonly analytic: number;
  readonly numeric: number;
  readonly diff: number;
  readonly relativeError: number;
}

export interface ParameterCheck {
  readonly name: string;
  readonly shape: readonly number[];
  /** Entries (or directions) evaluated, kinks included. */
  readonly evaluated: number;
  readonly skippedKinks: number;
  readonly belowFloor: number;
  readonly maxRelativeError: number;
  /** Over the entries judged by relative error (those passed by the floor are counted in belowFloor instead). */
  readonly meanRelativeError: number;
  /** The entry with the largest error (the largest |diff| when all are below the floor); null if nothing was compared. */
  readonly worst: WorstEntry | null;
  /** Every analytic entry of the parameter is exactly 0 (e.g. the bias before batch norm). */
  readonly analyticExactlyZero: boolean;
  readonly maxAbsNumeric: number;
  readonly failures: number;
  readonly passed: boolean;
}

export interface GradientCheckReport {
  readonly mode: 'entries' | 'directional';
  readonly stencil: 2 | 4;
  readonly precision: GradientCheckPrecision;
  readonly h: number;
  readonly tolerance: number;
  readonly absoluteFloor: number;
  readonly cost: number;
  readonly parameters: ParameterCheck[];
  readonly passed: boolean;
}

export class GradientCheckError extends Error {
  override readonly name = 'GradientCheckError';
  constructor(readonly report: GradientCheckReport) {
    super(describeFailures(report));
  }
}

export const DEFAULT_GRADIENT_CHECK = { h: 1e-6, tolerance: 1e-6, mode: 'entries', directions: 4, seed: 1, stencil: 2 } as const;

export type GradientCheckPrecision = 'float64' | 'double-double';
export const GRADIENT_CHECK_PRECISIONS: readonly GradientCheckPrecision[] = ['float64', 'double-double'];

/** The default step of each stencil at its default precision (float64 for 2, double-double for 4). */
export const DEFAULT_STEP: Readonly<Record<2 | 4, number>> = { 2: 1e-6, 4: 1e-6 };
/** The default tolerance of each stencil at its default precision. */
export const DEFAULT_TOLERANCE: Readonly<Record<2 | 4, number>> = { 2: 1e-6, 4: 1e-9 };

/**
 * Default step and tolerance (see the notes on stencils above): DEFAULT_STEP and DEFAULT_TOLERANCE,
 * except for stencil 4 in float64, whose rounding limits it to h = 1e-3 and 1e-6.
 */
export function gradientCheckDefaults(stencil: 2 | 4, precision: GradientCheckPrecision): { readonly h: number; readonly tolerance: number } {
  if (stencil === 4 && precision === 'float64') return { h: 1e-3, tolerance: 1e-6 };
  return { h: DEFAULT_STEP[stencil], tolerance: DEFAULT_TOLERANCE[stencil] };
}

/** Unit roundoff of J in each precision, for the default absolute floor. */
const UNIT_ROUNDOFF: Readonly<Record<GradientCheckPrecision, number>> = { float64: Number.EPSILON, 'double-double': DD_EPSILON };

export function relativeError(analytic: number, numeric: number): number {
  return Math.abs(analytic - numeric) / Math.max(1e-8, Math.abs(analytic) + Math.abs(numeric));
}

/**
 * The numeric side: J at the unperturbed parameters, and one centered difference
 * D(s) = (J(θ + s·e) − J(θ − s·e)) / (2s) along an entry or a unit direction e, null when the
 * perturbation flips a ReLU relative to the unperturbed pass.
 */
interface NumericSide {
  readonly cost: number;
  entry(ref: ParameterRef, index: number, s: number): number | null;
  direction(ref: ParameterRef, u: Float64Array, s: number): number | null;
}

/** Runs the check and returns the report; never throws on a mismatch (see assertGradientCheck / checkGradients). */
export function gradientCheck(net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, options: GradientCheckOptions = {}): GradientCheckReport {
  validateBatch('gradientCheck', net, x, labels, 'train');
  const stencil = options.stencil ?? DEFAULT_GRADIENT_CHECK.stencil;
  if (stencil !== 2 && stencil !== 4) throw new ReferenceArgumentError('gradientCheck', 'stencil', '2 or 4', describeValue(stencil));
  const precision = options.precision ?? (stencil === 4 ? 'double-double' : 'float64');
  if (!GRADIENT_CHECK_PRECISIONS.includes(precision))
    throw new ReferenceArgumentError('gradientCheck', 'precision', "'float64' or 'double-double'", describeValue(precision));
  // A float64 forward cannot define J to 32 digits: silently ignoring it would check something else.
  if (precision === 'double-double' && options.numericForward)
    throw new ReferenceArgumentError('gradientCheck', 'numericForward', "absent with precision 'double-double' (a float64 forward pass)", 'a function');
  const defaults = gradientCheckDefaults(stencil, precision);
  const h = options.h ?? defaults.h;
  const tolerance = options.tolerance ?? defaults.tolerance;
  const mode = options.mode ?? DEFAULT_GRADIENT_CHECK.mode;
  for (const [name, value] of [['h', h], ['tolerance', tolerance], ['lambda', lambda]] as const)
    if (!(value >= 0) || !Number.isFinite(value) || (name === 'h' && value === 0))
      throw new ReferenceArgumentError('gradientCheck', name, name === 'h' ? 'a finite number > 0' : 'a finite number >= 0', describeValue(value));

  for (const [name, value] of [['maxEntriesPerParameter', options.maxEntriesPerParameter], ['directions', options.directions]] as const)
    if (value !== undefined && !(Number.isInteger(value) && value >= 1))
      throw new ReferenceArgumentError('gradientCheck', name, 'a positive integer', describeValue(value));
  const known = parameters(net).map((ref) => ref.name);
  // An unknown name would silently check nothing and pass.
  for (const name of options.only ?? [])
    if (!known.includes(name)) throw new ReferenceArgumentError('gradientCheck', 'only', `parameter names among ${known.join(', ')}`, `'${name}'`);

  const analytic = options.analytic ? null : backward(net, forward(net, x, 'train'), labels, lambda);
  const analyticOf = (ref: ParameterRef): ArrayLike<number> => {
    if (!analytic) {
      const given = options.analytic![ref.name];
      if (!given || given.length !== ref.values.length)
        throw new ReferenceArgumentError('gradientCheck', `analytic.${ref.name}`, `${ref.values.length} values`, describeValue(given));
      return given;
    }
    return gradientOf(analytic, ref);
  };
  const work = cloneNetwork(net);
  const side =
    precision === 'double-double'
      ? doubleDoubleSide(work, x, labels, lambda)
      : float64Side(work, x, labels, lambda, options.numericForward ?? ((n: Network, input: Matrix) => forward(n, input, 'train')));
  const absoluteFloor = options.absoluteFloor ?? (64 * UNIT_ROUNDOFF[precision] * Math.max(1, Math.abs(side.cost))) / h;
  const prng = createPrng(options.seed ?? DEFAULT_GRADIENT_CHECK.seed);
  const selected = parameters(work).filter((ref) => !options.only || options.only.includes(ref.name));
  const checks = selected.map((ref) => {
    const grad = analyticOf(ref);
    return mode === 'entries'
      ? checkEntries(ref, grad, side, stencil, h, tolerance, absoluteFloor, prng, options.maxEntriesPerParameter)
      : checkDirections(ref, grad, side, stencil, h, tolerance, absoluteFloor, prng, options.directions ?? DEFAULT_GRADIENT_CHECK.directions);
  });
  return { mode, stencil, precision, h, tolerance, absoluteFloor, cost: side.cost, parameters: checks, passed: checks.every((c) => c.passed) };
}

/**
 * J by `numericForward` on `work`, whose parameters are moved in place and restored. Each
 * difference divides by the step actually taken (θ ± s rounded to float64, so up − down is not
 * exactly 2s).
 */
function float64Side(work: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, numericForward: (net: Network, x: Matrix) => ForwardResult): NumericSide {
  const evaluate = (): { cost: number; reluMask: Uint8Array } => {
    const result = numericForward(work, x);
    return { cost: costFromForward(work, result, labels, lambda).cost, reluMask: reluMask(work, result) };
  };
  const base = evaluate();
  const flipped = (...masks: Uint8Array[]) => masks.some((m) => !sameMask(m, base.reluMask));
  return {
    cost: base.cost,
    entry(ref, i, s) {
      const original = ref.values[i];
      const up = original + s;
      const down = original - s;
      ref.values[i] = up;
      const plus = evaluate();
      ref.values[i] = down;
      const minus = evaluate();
      ref.values[i] = original;
      return flipped(plus.reluMask, minus.reluMask) ? null : (plus.cost - minus.cost) / (up - down);
    },
    direction(ref, u, s) {
      const original = Float64Array.from(ref.values);
      for (let i = 0; i < u.length; i++) ref.values[i] = original[i] + s * u[i];
      const plus = evaluate();
      for (let i = 0; i < u.length; i++) ref.values[i] = original[i] - s * u[i];
      const minus = evaluate();
      ref.values.set(original);
      return flipped(plus.reluMask, minus.reluMask) ? null : (plus.cost - minus.cost) / (2 * s);
    },
  };
}

/** J in double-double (DoubleDoubleCost): θᵢ ± s is exact there, so each difference divides by exactly 2s. */
function doubleDoubleSide(work: Network, x: Matrix, labels: ArrayLike<number>, lambda: number): NumericSide {
  const cost = new DoubleDoubleCost(work, x, labels, lambda);
  const quotient = (plus: DoubleDouble | null, minus: DoubleDouble | null, s: number) => (plus && minus ? ddToNumber(ddDivNumber(ddSub(plus, minus), 2 * s)) : null);
  return {
    cost: ddToNumber(cost.base),
    entry: (ref, i, s) => quotient(cost.atEntry(ref, i, s), cost.atEntry(ref, i, -s), s),
    direction: (ref, u, s) => quotient(cost.alongDirection(ref, u, s), cost.alongDirection(ref, u, -s), s),
  };
}

function reluMask(net: Network, result: ForwardResult): Uint8Array {
  const hidden = result.layers.slice(0, net.layers.length - 1);
  const mask = new Uint8Array(hidden.reduce((n, c) => n + c.preActivation.data.length, 0));
  let k = 0;
  for (const c of hidden) for (const v of c.preActivation.data) mask[k++] = v > 0 ? 1 : 0;
  return mask;
}

function sameMask(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function chooseEntries(count: number, limit: number | undefined, prng: Prng): number[] {
  const all = Array.from({ length: count }, (_, i) => i);
  if (limit === undefined || limit >= count) return all;
  for (let i = 0; i < limit; i++) {
    const j = i + nextInt(prng, count - i);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, limit).sort((a, b) => a - b);
}

class ErrorTally {
  evaluated = 0;
  skippedKinks = 0;
  belowFloor = 0;
  failures = 0;
  compared = 0;
  sumRel = 0;
  maxRel = 0;
  maxAbsNumeric = 0;
  worst: WorstEntry | null = null;
  // −∞, not −1: excused entries score in [−2, −1] and must still be ranked (mutation testing found
  // that with −1 a parameter whose every entry was excused reported worst = null).
  private worstScore = -Infinity;

  constructor(private readonly tolerance: number, private readonly absoluteFloor: number) {}

  add(index: number[], analytic: number, numeric: number): void {
    const diff = Math.abs(analytic - numeric);
    // A NaN or infinite gradient (either side) is a failure, never a pass: NaN compares false
    // with everything, so it is mapped to an infinite error before any comparison.
    const relative = Number.isFinite(analytic) && Number.isFinite(numeric) ? relativeError(analytic, numeric) : Infinity;
    // The floor only excuses entries that fail relatively while differing by no more than rounding noise.
    const excused = relative > this.tolerance && diff <= this.absoluteFloor;
    const counted = excused ? 0 : relative;
    this.compared++;
    this.sumRel += counted;
    this.maxRel = Math.max(this.maxRel, counted);
    this.maxAbsNumeric = Math.max(this.maxAbsNumeric, Math.abs(numeric));
    if (excused) this.belowFloor++;
    if (counted > this.tolerance) this.failures++;
    // Rank by counted relative error; excused entries rank below every counted one, by |diff|.
    const score = excused ? diff / this.absoluteFloor - 2 : counted;
    if (score > this.worstScore) {
      this.worstScore = score;
      this.worst = { index, analytic, numeric, diff, relativeError: relative };
    }
  }

  result(ref: ParameterRef, analyticExactlyZero: boolean): ParameterCheck {
    return {
      name: ref.name,
      shape: ref.shape,
      evaluated: this.evaluated,
      skippedKinks: this.skippedKinks,
      belowFloor: this.belowFloor,
      maxRelativeError: this.maxRel,
      // Over the entries judged relatively: floor-excused ones are counted apart (belowFloor).
      meanRelativeError: this.compared > this.belowFloor ? this.sumRel / (this.compared - this.belowFloor) : 0,
      worst: this.worst,
      analyticExactlyZero,
      maxAbsNumeric: this.maxAbsNumeric,
      failures: this.failures,
      // A parameter none of whose entries could be compared (all at kinks) is not verified.
      passed: this.failures === 0 && (this.compared > 0 || this.evaluated === 0),
    };
  }
}

function unflatten(ref: ParameterRef, flat: number): number[] {
  return ref.shape.length === 2 ? [Math.floor(flat / ref.shape[1]), flat % ref.shape[1]] : [flat];
}

function checkEntries(
  ref: ParameterRef, grad: ArrayLike<number>, side: NumericSide,
  stencil: 2 | 4, h: number, tolerance: number, absoluteFloor: number, prng: Prng, limit: number | undefined,
): ParameterCheck {
  const tally = new ErrorTally(tolerance, absoluteFloor);
  for (const i of chooseEntries(ref.values.length, limit, prng)) {
    tally.evaluated++;
    const numeric = centered((s) => side.entry(ref, i, s), stencil, h);
    if (numeric === null) {
      tally.skippedKinks++;
      continue;
    }
    tally.add(unflatten(ref, i), grad[i], numeric);
  }
  return tally.result(ref, Array.prototype.every.call(grad, (g: number) => g === 0));
}

/** The stencil's estimate from centered differences D(s): D(h), or Richardson's (4·D(h) − D(2h)) / 3. */
function centered(difference: (s: number) => number | null, stencil: 2 | 4, h: number): number | null {
  const near = difference(h);
  if (near === null || stencil === 2) return near;
  const far = difference(2 * h);
  return far === null ? null : (4 * near - far) / 3;
}

function checkDirections(
  ref: ParameterRef, grad: ArrayLike<number>, side: NumericSide,
  stencil: 2 | 4, h: number, tolerance: number, absoluteFloor: number, prng: Prng, directions: number,
): ParameterCheck {
  const tally = new ErrorTally(tolerance, absoluteFloor);
  const u = new Float64Array(ref.values.length);
  for (let d = 0; d < directions; d++) {
    tally.evaluated++;
    let norm = 0;
    for (let i = 0; i < u.length; i++) norm += (u[i] = nextNormal(prng)) ** 2;
    norm = Math.sqrt(norm);
    let analytic = 0;
    for (let i = 0; i < u.length; i++) analytic += grad[i] * (u[i] /= norm);
    const numeric = centered((s) => side.direction(ref, u, s), stencil, h);
    if (numeric === null) {
      tally.skippedKinks++;
      continue;
    }
    tally.add([d], analytic, numeric);
  }
  return tally.result(ref, Array.prototype.every.call(grad, (g: number) => g === 0));
}

function formatEntry(name: string, w: WorstEntry, tolerance: number): string {
  const f = (v: number) => v.toExponential(6);
  return `gradient mismatch for ${name}[${w.index.join(',')}]: analytic ${f(w.analytic)}, numeric ${f(w.numeric)}, diff ${w.diff.toExponential(3)}, rel err ${w.relativeError.toExponential(3)} (tolerance ${tolerance})`;
}

export function describeFailures(report: GradientCheckReport): string {
  const failed = report.parameters.filter((p) => !p.passed);
  if (failed.length === 0) return 'gradient check passed';
  return failed
    .map((p) =>
      p.worst
        ? `${formatEntry(p.name, p.worst, report.tolerance)}; ${p.failures} of ${p.evaluated - p.skippedKinks} compared entries fail`
        : `gradient of ${p.name} not verified: all ${p.evaluated} evaluated entries were skipped at ReLU kinks`,
    )
    .join('\n');
}

/** The one failure path: throws GradientCheckError naming the worst entry of every failing parameter. */
export function assertGradientCheck(report: GradientCheckReport): GradientCheckReport {
  if (!report.passed) throw new GradientCheckError(report);
  return report;
}

/** gradientCheck, then assertGradientCheck. */
export function checkGradients(net: Network, x: Matrix, labels: ArrayLike<number>, lambda: number, options: GradientCheckOptions = {}): GradientCheckReport {
  return assertGradientCheck(gradientCheck(net, x, labels, lambda, options));
}

export type { Gradients };
