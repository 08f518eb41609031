import { BACKEND_NAMES, costAndGradients, disposeModel, initBackend, modelFromWeights, type BackendName, type CoreModel, type Float32Matrix, type WeightsFile } from '@bnmlp/core';
import type * as Reference from '@bnmlp/reference';
import { CIFAR_PIXELS, computeFeatureStats, loadCifarDataset, sliceRecords, standardizeFeatures } from '@bnmlp/trainer';
import { resolveDataSource, type DataSourceContext, type DataSourceKind } from '../data-source.js';
import { CliArgumentError, CliDependencyError, quote } from '../errors.js';
import { formatFlags, formatNumber, parseFlags, type FlagSpec } from '../options.js';
import { formatTable, type Align } from '../table.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp gradcheck`: the report's gradient-check table, recomputed. For every depth in `layers`
(k linear layers, k − 1 hidden layers of width `hidden`), with and without batch norm, and for
λ = 0 and λ = `lambda`, a network made by @bnmlp/reference's createNetwork (He init from `seed`,
standard b = 0, γ = 1, β = 0) is checked by the reference's gradientCheck on the first `batch`
training records, reduced to the first `dims` features and standardized by the whole training
set's mean and std. @bnmlp/reference is a devDependency (a verification tool, not shipped), so it
is imported only when the command runs.

With `impl: 'core'` (--impl core) the gradients judged are @bnmlp/core's float32 analytic ones,
on the same network's weights rounded to float32 (reference networkToWeights(net, 'float32') →
core modelFromWeights, and the reference reads the same file back), two ways: (a) against the
reference's float64 centered differences on those weights (gradientCheck with `analytic`), and
(b) against the reference's float64 analytic gradients, entry by entry. Both use the float32
tolerance of CORE_GRADIENT_TOLERANCE below.
*/

/**
 * --impl core: the float32 tolerance, in one place. It is @bnmlp/core's own gradient limit,
 * stated and justified in packages/core/src/test-support/compare.ts (TOLERANCES.gradient) and
 * used the same way by packages/core/src/gradient-check.test.ts: an entry may differ from the
 * float64 value by `relative` × the parameter's scale (its largest |reference gradient entry|).
 * Why 2e-3: float32's unit roundoff is u = 2⁻²⁴ ≈ 6e-8; on well-conditioned batches each layer
 * adds ~√m·u ≈ 1e-6 (m ≤ 256 terms per sum), BN's backward (ĝ − mean(ĝ) − ŝ·mean(ĝŝ)) loses a
 * digit or two more, and the reference's own h = 1e-6 difference is off by up to 5e-5 on
 * ill-conditioned BN; compare.ts observed ≤ 1 % of the limit used, while a wrong formula errs by
 * ≳ 1e-1. Per entry, (a) passes when |core − numeric|/(|core| + |numeric|) ≤ `relative` or
 * |core − numeric| ≤ `relative` × scale + the centered difference's own float64 noise
 * (64·ε·max(1, |J|)/h); in directional mode the scale is the gradient's 2-norm (the largest
 * derivative along a unit direction). (b) passes when max |core − reference| ≤ `relative` × scale.
 * Not included: compare.ts's running-error bound for cancellations (its `roundingBounds`, a
 * test-only analysis), which matters only for degenerate cases (BN layers of width 1, batches of
 * 2 nearly equal rows, saturated softmax); standardized CIFAR features are well-conditioned.
 */
export const CORE_GRADIENT_TOLERANCE = {
  relative: 2e-3,
  source: 'packages/core/src/test-support/compare.ts (TOLERANCES.gradient)',
} as const;

export type GradcheckImpl = 'reference' | 'core';
export const GRADCHECK_IMPLS: readonly GradcheckImpl[] = ['reference', 'core'];

/** @bnmlp/core's float32 analytic gradients by parameter name (W1, b1, gamma1, …); a seam for tests. */
export type CoreGradients = (model: CoreModel, x: Float32Matrix, labels: Uint8Array, lambda: number) => Record<string, Float32Array>;

export const coreGradients: CoreGradients = (model, x, labels, lambda) =>
  Object.fromEntries(Object.entries(costAndGradients(model, x, labels, lambda).gradients).map(([name, g]) => [name, g.values]));

export type ReferenceModule = typeof Reference;

export interface GradcheckOptions {
  /** A CIFAR-10 binary directory; null: the shared subset when found, else the repository's fixture. */
  readonly data: string | null;
  readonly dims: number;
  readonly batch: number;
  readonly hidden: number;
  /** Depths to check, in linear layers (2 = one hidden layer). */
  readonly layers: readonly number[];
  /** The λ > 0 checked besides λ = 0 (0: only λ = 0). */
  readonly lambda: number;
  readonly seed: number;
  readonly mode: 'entries' | 'directional';
  /** Directions per parameter in directional mode. */
  readonly directions: number;
  /** Entries mode: at most this many entries per parameter, drawn at random; null: every entry. */
  readonly maxEntries: number | null;
  /** Centered-difference step; when not given, STENCIL_STEP[stencil]. */
  readonly step: number;
  /**
   * 2: the classic two-point centered difference in float64 (the report's table); 4: the five-point
   * (Richardson-extrapolated) one, truncation ~h⁴, on J evaluated in double-double arithmetic (~32 digits).
   */
  readonly stencil: 2 | 4;
  /** Reference: as given, else STENCIL_TOLERANCE[stencil]. Core: CORE_GRADIENT_TOLERANCE.relative, fixed. */
  readonly tolerance: number;
  /** Whose analytic gradients are checked: @bnmlp/reference's (float64) or @bnmlp/core's (float32). */
  readonly impl: GradcheckImpl;
  /** impl 'core': the TensorFlow.js backend ('auto': tensorflow, else wasm, else cpu). */
  readonly backend: BackendName | 'auto';
}

export const DEFAULT_GRADCHECK_OPTIONS: GradcheckOptions = {
  data: null,
  dims: 20,
  batch: 10,
  hidden: 50,
  layers: [2, 3, 4],
  lambda: 0.01,
  seed: 1,
  mode: 'entries',
  directions: 4,
  maxEntries: null,
  step: 1e-6,
  stencil: 2,
  tolerance: 1e-6,
  impl: 'reference',
  backend: 'auto',
};

/**
 * The default step and tolerance of each stencil, as @bnmlp/reference's DEFAULT_STEP and
 * DEFAULT_TOLERANCE (gradient-check.ts, where the measurements behind them are). Stencil 4 evaluates
 * J in double-double, so its rounding (~1e-32·|J|/h) allows a step small enough for the h⁴ truncation
 * to vanish too: on the report's configurations h = 1e-3 left up to 2.9e-8, 1e-4 up to 6.5e-12, 1e-5
 * and 1e-6 agree to the digits printed. What remains is the float64 analytic gradients' own rounding
 * (worst 5.4e-12 there), so its tolerance is 1e-9: an analytic error of relative size 1e-6 fails.
 */
export const STENCIL_STEP: Readonly<Record<2 | 4, number>> = { 2: 1e-6, 4: 1e-6 };
export const STENCIL_TOLERANCE: Readonly<Record<2 | 4, number>> = { 2: 1e-6, 4: 1e-9 };
/** The arithmetic of J on the numeric side, per stencil (the reference's default for each). */
export const STENCIL_PRECISION: Readonly<Record<2 | 4, Reference.GradientCheckPrecision>> = { 2: 'float64', 4: 'double-double' };
const FLOOR_FORMULA: Readonly<Record<Reference.GradientCheckPrecision, string>> = {
  float64: '64 * eps_machine * max(1, |J|) / h',
  'double-double': '64 * 2^-104 * max(1, |J|) / h (double-double rounding)',
};

type OptionKey = keyof GradcheckOptions;
type Kind = 'int' | 'number' | 'list' | 'mode' | 'path' | 'choice';

interface OptionRule {
  readonly flag: string;
  readonly kind: Kind;
  readonly value: string;
  readonly help: string;
  readonly expected: string;
  readonly ok: (v: unknown) => boolean;
  /** The default as --help shows it, when String(default) would not say it. */
  readonly shownDefault?: string;
}

/** A per-stencil default as --help shows it. */
const perStencil = (values: Readonly<Record<2 | 4, number>>) =>
  values[2] === values[4] ? `${formatNumber(values[2])}, either stencil` : `${formatNumber(values[2])} (--stencil 2), ${formatNumber(values[4])} (--stencil 4)`;

const isInt = (v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isNumber = (v: unknown, positive: boolean): v is number => typeof v === 'number' && Number.isFinite(v) && (positive ? v > 0 : v >= 0);

const RULES: { readonly [K in OptionKey]: OptionRule } = {
  data: {
    flag: 'data', kind: 'path', value: '<dir>', help: 'CIFAR-10 binary directory (data_batch_<n>.bin, batches.meta.txt)',
    expected: 'a directory path', ok: (v) => v === null || (typeof v === 'string' && v !== ''),
    shownDefault: '$BNMLP_CIFAR_DIR, else shared/datasets/cifar-10-subset above the working directory or the installation, else fixtures/cifar-10-tiny',
  },
  dims: { flag: 'dims', kind: 'int', value: '<d>', help: `input features: the first d of ${CIFAR_PIXELS}`, expected: `an integer in [1, ${CIFAR_PIXELS}]`, ok: (v) => isInt(v, 1, CIFAR_PIXELS) },
  batch: {
    flag: 'batch', kind: 'int', value: '<n>', help: 'batch: the first n training records',
    expected: 'an integer >= 2 (batch norm needs 2 rows)', ok: (v) => isInt(v, 2),
  },
  hidden: { flag: 'hidden', kind: 'int', value: '<width>', help: 'width of every hidden layer', expected: 'an integer >= 1', ok: (v) => isInt(v, 1) },
  layers: {
    flag: 'layers', kind: 'list', value: '<k,...>', help: 'depths to check, in linear layers (2 = one hidden layer)',
    expected: 'a comma-separated list of integers >= 1', ok: (v) => Array.isArray(v) && v.length > 0 && v.every((k) => isInt(k, 1)),
  },
  lambda: {
    flag: 'lambda', kind: 'number', value: '<λ>', help: 'L2 weight: each network is checked with λ = 0 and with this λ',
    expected: 'a finite number >= 0', ok: (v) => isNumber(v, false),
  },
  seed: { flag: 'seed', kind: 'int', value: '<s>', help: 'seed of the He initialization and of sampled entries/directions', expected: 'an integer in [0, 4294967295]', ok: (v) => isInt(v, 0, 0xffffffff) },
  mode: {
    flag: 'mode', kind: 'mode', value: '<mode>', help: "'entries' (entry by entry) or 'directional' (random directions per parameter)",
    expected: "'entries' or 'directional'", ok: (v) => v === 'entries' || v === 'directional',
  },
  directions: { flag: 'directions', kind: 'int', value: '<n>', help: 'directions per parameter in directional mode', expected: 'an integer >= 1', ok: (v) => isInt(v, 1) },
  maxEntries: {
    flag: 'max-entries', kind: 'int', value: '<n>', help: 'entries mode: check at most n random entries per parameter',
    expected: 'an integer >= 1', ok: (v) => v === null || isInt(v, 1), shownDefault: 'every entry',
  },
  step: {
    flag: 'step', kind: 'number', value: '<h>', help: 'centered-difference step', expected: 'a finite number > 0', ok: (v) => isNumber(v, true),
    shownDefault: perStencil(STENCIL_STEP),
  },
  stencil: {
    flag: 'stencil', kind: 'int', value: '<2|4>',
    help:
      "centered difference: 2 (two-point on float64 J: the report's table) or 4 (five-point, Richardson-extrapolated, on double-double J: relative errors <= 1e-9)",
    expected: '2 or 4', ok: (v) => v === 2 || v === 4,
  },
  tolerance: {
    flag: 'tolerance', kind: 'number', value: '<t>', help: 'largest relative error accepted per entry',
    expected: 'a finite number > 0', ok: (v) => isNumber(v, true),
    shownDefault: perStencil(STENCIL_TOLERANCE),
  },
  impl: {
    flag: 'impl', kind: 'choice', value: '<impl>',
    help: `whose analytic gradients: 'reference' (float64) or 'core' (@bnmlp/core's float32, judged with tolerance ${CORE_GRADIENT_TOLERANCE.relative} of each parameter's largest entry)`,
    expected: "'reference' or 'core'", ok: (v) => GRADCHECK_IMPLS.includes(v as GradcheckImpl),
  },
  backend: {
    flag: 'backend', kind: 'choice', value: '<name>', help: "--impl core: 'auto', 'tensorflow', 'wasm' or 'cpu'",
    expected: "'auto', 'tensorflow', 'wasm' or 'cpu'", ok: (v) => v === 'auto' || BACKEND_NAMES.includes(v as BackendName),
  },
};

const OPTION_KEYS = Object.keys(RULES) as OptionKey[];

/** The command's flags, in --help order; parsing uses the same list. */
export const GRADCHECK_FLAGS: readonly FlagSpec[] = [
  ...OPTION_KEYS.map((key): FlagSpec => {
    const rule = RULES[key];
    const value = DEFAULT_GRADCHECK_OPTIONS[key];
    return { flag: rule.flag, value: rule.value, help: rule.help, default: rule.shownDefault ?? (Array.isArray(value) ? value.join(',') : typeof value === 'number' ? formatNumber(value) : String(value)) };
  }),
  { flag: 'json', help: 'print one JSON document (settings, data source, every parameter report) instead of the table' },
  { flag: 'help', short: 'h', help: 'show this help' },
];

/** How errors name the options: flags for the command line, field names for code. */
export interface OptionNaming {
  readonly op: string;
  readonly argument: (key: OptionKey) => string;
  /** The text as typed, for error messages. */
  readonly raw?: Partial<Record<OptionKey, string>>;
}

const FIELD_NAMING: OptionNaming = { op: 'runGradcheck', argument: (key) => key };

function describeValue(value: unknown): string {
  if (typeof value === 'string') return quote(value);
  if (Array.isArray(value)) return `[${value.join(', ')}]`;
  return String(value);
}

/** Fills defaults and checks every given field; throws CliArgumentError naming the first bad one. */
export function resolveGradcheckOptions(input: Partial<GradcheckOptions>, naming: OptionNaming = FIELD_NAMING): GradcheckOptions {
  const resolved: Record<string, unknown> = { ...DEFAULT_GRADCHECK_OPTIONS };
  for (const key of OPTION_KEYS) {
    const value = input[key];
    if (value === undefined) continue;
    if (!RULES[key].ok(value)) {
      const raw = naming.raw?.[key];
      throw new CliArgumentError(naming.op, naming.argument(key), RULES[key].expected, raw !== undefined ? quote(raw) : describeValue(value));
    }
    resolved[key] = Array.isArray(value) ? [...value] : value;
  }
  const raw = (key: OptionKey) => (naming.raw?.[key] !== undefined ? quote(naming.raw[key]) : describeValue(input[key]));
  if (input.step === undefined) resolved.step = STENCIL_STEP[resolved.stencil as 2 | 4];
  if (input.tolerance === undefined) resolved.tolerance = STENCIL_TOLERANCE[resolved.stencil as 2 | 4];
  if (resolved.impl === 'core') {
    // The float32 tolerance is fixed (one place: CORE_GRADIENT_TOLERANCE); resolved options carry it.
    if (input.tolerance !== undefined && input.tolerance !== CORE_GRADIENT_TOLERANCE.relative)
      throw new CliArgumentError(naming.op, naming.argument('tolerance'), `left out with ${naming.argument('impl')} core (float32 gradients are judged with the fixed tolerance ${CORE_GRADIENT_TOLERANCE.relative})`, raw('tolerance'));
    resolved.tolerance = CORE_GRADIENT_TOLERANCE.relative;
  } else if (input.backend !== undefined && input.backend !== DEFAULT_GRADCHECK_OPTIONS.backend) {
    throw new CliArgumentError(naming.op, naming.argument('backend'), `used with ${naming.argument('impl')} core only (the reference is plain float64 JavaScript)`, raw('backend'));
  }
  return resolved as unknown as GradcheckOptions;
}

const parseInteger = (text: string) => (/^\+?\d+$/.test(text.trim()) ? Number(text) : NaN);
const parseNumber = (text: string) => (text.trim() === '' ? NaN : Number(text));

function convert(kind: Kind, text: string): unknown {
  switch (kind) {
    case 'int':
      return parseInteger(text);
    case 'number':
      return parseNumber(text);
    case 'list':
      return text.split(',').map(parseInteger);
    case 'mode':
    case 'path':
    case 'choice':
      return text;
  }
}

export interface GradcheckArgs {
  readonly help: boolean;
  readonly json: boolean;
  readonly options: GradcheckOptions;
  readonly naming: OptionNaming;
}

/** Parses `bnmlp gradcheck` arguments (everything after the command name). */
export function parseGradcheckArgs(args: readonly string[]): GradcheckArgs {
  const op = 'bnmlp gradcheck';
  const { values } = parseFlags(op, args, GRADCHECK_FLAGS);
  const raw: Partial<Record<OptionKey, string>> = {};
  const input: Record<string, unknown> = {};
  for (const key of OPTION_KEYS) {
    const text = values[RULES[key].flag];
    if (typeof text !== 'string') continue;
    raw[key] = text;
    input[key] = convert(RULES[key].kind, text);
  }
  const naming: OptionNaming = { op, argument: (key) => `--${RULES[key].flag}`, raw };
  const help = values.help === true;
  // With --help the values are not used, so they are not judged either.
  const options = help ? DEFAULT_GRADCHECK_OPTIONS : resolveGradcheckOptions(input as Partial<GradcheckOptions>, naming);
  return { help, json: values.json === true, options, naming };
}

/** One parameter's result: @bnmlp/reference's ParameterCheck, plus what the table needs. */
export interface GradcheckParameterRow {
  readonly name: string;
  readonly shape: readonly number[];
  /** Entries (or directions) evaluated, kinks included. */
  readonly evaluated: number;
  readonly skippedKinks: number;
  /** Entries that fail relatively but differ by no more than the absolute floor (rounding noise): they pass, and are left out of the relative-error statistics. */
  readonly belowFloor: number;
  readonly maxRelativeError: number;
  readonly meanRelativeError: number;
  readonly worst: { readonly index: readonly number[]; readonly analytic: number; readonly numeric: number; readonly diff: number; readonly relativeError: number } | null;
  readonly analyticExactlyZero: boolean;
  readonly maxAbsNumeric: number;
  /** A linear layer's bias followed by batch norm: its true gradient is exactly 0. */
  readonly biasBeforeBatchNorm: boolean;
  readonly failures: number;
  /** Reference: the centered-difference check. Core: both comparisons (`core`). */
  readonly passed: boolean;
  /** --impl core only: the fields above are comparison (a), core against float64 centered differences; this adds (b). */
  readonly core?: CoreParameterComparison;
}

/** --impl core, one parameter. */
export interface CoreParameterComparison {
  /** Comparison (a)'s absolute floor: relative × scale + the float64 difference's noise. */
  readonly floor: number;
  /** (a): core's float32 gradient against float64 centered differences. */
  readonly versusNumericPassed: boolean;
  /** (b): core's float32 gradient against the reference's float64 analytic gradient. */
  readonly versusReference: {
    /** Largest |reference entry|. */
    readonly scale: number;
    /** relative × scale. */
    readonly limit: number;
    readonly maxAbsError: number;
    /** Largest |c − r| / max(1e-8, |c| + |r|) over the entries (for information: the limit is judged on the absolute error). */
    readonly maxRelativeError: number;
    /** maxAbsError / limit (≤ 1 passes). */
    readonly usedOfLimit: number;
    /** The entry with the largest |core − reference|. */
    readonly worst: { readonly index: readonly number[]; readonly core: number; readonly reference: number; readonly diff: number; readonly relativeError: number } | null;
    readonly passed: boolean;
  };
}

export interface GradcheckConfiguration {
  readonly label: string;
  readonly layers: number;
  readonly hiddenDims: readonly number[];
  readonly batchNorm: boolean;
  readonly lambda: number;
  /** J at the unperturbed parameters. */
  readonly cost: number;
  readonly absoluteFloor: number;
  readonly seconds: number;
  readonly passed: boolean;
  readonly parameters: readonly GradcheckParameterRow[];
}

export interface GradcheckReport {
  readonly format: 'bnmlp-gradcheck';
  readonly version: 1;
  readonly passed: boolean;
  readonly options: GradcheckOptions;
  readonly data: {
    readonly kind: DataSourceKind;
    readonly dir: string;
    readonly description: string;
    readonly trainFiles: readonly string[];
    readonly trainRecords: number;
    readonly classNames: readonly string[];
    readonly features: { readonly dims: number; readonly of: number; readonly preprocessing: string };
    readonly batch: { readonly records: number; readonly labels: readonly number[] };
  };
  readonly network: { readonly init: string; readonly seed: number; readonly classes: number; readonly initialValues: string; readonly batchNorm: string; readonly eps: number };
  readonly check: {
    readonly method: string;
    readonly mode: 'entries' | 'directional';
    readonly coverage: string;
    readonly stencil: 2 | 4;
    /** The arithmetic of J on the numeric side: float64 (stencil 2) or double-double (stencil 4). */
    readonly precision: Reference.GradientCheckPrecision;
    readonly h: number;
    readonly tolerance: number;
    readonly relativeError: string;
    readonly absoluteFloor: string;
  };
  /** --impl core only: the backend and the float32 tolerance the core was judged with. */
  readonly core?: {
    readonly backend: BackendName;
    readonly weights: string;
    readonly tolerance: number;
    readonly scale: string;
    readonly justification: string;
  };
  readonly configurations: readonly GradcheckConfiguration[];
  readonly summary: {
    readonly configurations: number;
    readonly rows: number;
    readonly failedRows: number;
    readonly entriesEvaluated: number;
    readonly kinksSkipped: number;
    readonly belowFloor: number;
    /** The largest relative error over all rows (entries passed by the floor left out). */
    readonly maxRelativeError: number;
    readonly seconds: number;
  };
}

export interface GradcheckDependencies extends DataSourceContext {
  /** Default: `import('@bnmlp/reference')`. */
  readonly importReference?: () => Promise<ReferenceModule>;
  /** Called as each configuration starts (the CLI shows it on a terminal). */
  readonly onProgress?: (message: string) => void;
  readonly naming?: OptionNaming;
  /** --impl core: how the core's gradients are computed (default `coreGradients`: @bnmlp/core's costAndGradients). Tests plant bugs here. */
  readonly coreGradients?: CoreGradients;
}

/** Imports @bnmlp/reference, turning "not installed / not built" into a CliDependencyError that says what to do. */
export async function loadReference(op: string, importer: () => Promise<ReferenceModule> = () => import('@bnmlp/reference')): Promise<ReferenceModule> {
  try {
    return await importer();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') throw error;
    throw new CliDependencyError(
      op,
      '@bnmlp/reference',
      'installed and built: it is a devDependency of @bnmlp/cli (a verification tool, not shipped), so run this from a bnmlp ' +
        'checkout after `pnpm install` and `pnpm build` (`npm run gradcheck` does both)',
      `${code}: ${(error as Error).message.split('\n')[0]}`,
    );
  }
}

export function configurationLabel(layers: number, batchNorm: boolean, lambda: number): string {
  return `${layers}-layer ${batchNorm ? 'BN' : 'no BN'} λ=${formatNumber(lambda)}`;
}

function maxAbs(values: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) max = Math.max(max, Math.abs(values[i]));
  return max;
}

function norm2(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i] * values[i];
  return Math.sqrt(sum);
}

function unflatten(shape: readonly number[], flat: number): number[] {
  return shape.length === 2 ? [Math.floor(flat / shape[1]), flat % shape[1]] : [flat];
}

/** (b): the core's gradient against the reference's, entry by entry, held to relative × the reference's largest |entry|. */
export function compareWithReference(shape: readonly number[], core: ArrayLike<number>, reference: ArrayLike<number>): CoreParameterComparison['versusReference'] {
  const scale = maxAbs(reference);
  const limit = CORE_GRADIENT_TOLERANCE.relative * scale;
  let maxAbsError = 0;
  let maxRelativeError = 0;
  let worstIndex = -1;
  for (let i = 0; i < reference.length; i++) {
    const diff = Math.abs(core[i] - reference[i]);
    // NaN anywhere is the worst possible entry.
    const counted = Number.isNaN(diff) ? Infinity : diff;
    if (counted > maxAbsError || worstIndex < 0) {
      maxAbsError = counted;
      worstIndex = i;
    }
    maxRelativeError = Math.max(maxRelativeError, Number.isNaN(diff) ? Infinity : diff / Math.max(1e-8, Math.abs(core[i]) + Math.abs(reference[i])));
  }
  const worst =
    worstIndex < 0
      ? null
      : {
          index: unflatten(shape, worstIndex),
          core: core[worstIndex],
          reference: reference[worstIndex],
          diff: maxAbsError,
          relativeError: Number.isFinite(maxAbsError) ? maxAbsError / Math.max(1e-8, Math.abs(core[worstIndex]) + Math.abs(reference[worstIndex])) : Infinity,
        };
  return { scale, limit, maxAbsError, maxRelativeError, usedOfLimit: maxAbsError === 0 ? 0 : maxAbsError / limit, worst, passed: maxAbsError <= limit };
}

/**
 * One configuration with --impl core: the network's weights rounded to float32 and loaded into
 * @bnmlp/core, whose float32 gradients are checked (a) by the reference's centered differences on
 * the same weights, one parameter at a time (each with its own floor), and (b) against the
 * reference's analytic gradients.
 */
function checkCore(
  reference: ReferenceModule, net: Reference.Network, features: Float32Matrix, x: Reference.Matrix, labels: Uint8Array, lambda: number,
  options: GradcheckOptions, checkOptions: Reference.GradientCheckOptions, gradientsOf: CoreGradients,
): { cost: number; float64Floor: number; parameters: Array<{ check: Reference.ParameterCheck; comparison: CoreParameterComparison }> } {
  const weights = reference.networkToWeights(net, 'float32');
  const net32 = reference.networkFromWeights(weights);
  const model = modelFromWeights(weights as unknown as WeightsFile);
  let analytic: Record<string, Float32Array>;
  try {
    analytic = gradientsOf(model, features, labels, lambda);
  } finally {
    disposeModel(model);
  }
  const exact = reference.costAndGradients(net32, x, labels, lambda);
  const float64Floor = (64 * Number.EPSILON * Math.max(1, Math.abs(exact.cost))) / options.step;
  const parameters = reference.parameters(net32).map((p) => {
    const referenceGradient = reference.gradientOf(exact.gradients, p);
    const coreGradient = analytic[p.name];
    if (!coreGradient || coreGradient.length !== referenceGradient.length)
      throw new Error(`@bnmlp/core returned ${coreGradient ? `${coreGradient.length} values` : 'no gradient'} for ${p.name}, expected ${referenceGradient.length}`);
    const scale = options.mode === 'directional' ? norm2(referenceGradient) : maxAbs(referenceGradient);
    const floor = CORE_GRADIENT_TOLERANCE.relative * scale + float64Floor;
    const report = reference.gradientCheck(net32, x, labels, lambda, { ...checkOptions, analytic: { [p.name]: coreGradient }, only: [p.name], absoluteFloor: floor });
    const check = report.parameters[0];
    const versusReference = compareWithReference(p.shape, coreGradient, referenceGradient);
    return { check, comparison: { floor, versusNumericPassed: check.passed, versusReference } };
  });
  return { cost: exact.cost, float64Floor, parameters };
}

/** Runs every configuration and returns the whole report; a failing check is reported, not thrown. */
export async function runGradcheck(input: Partial<GradcheckOptions> = {}, deps: GradcheckDependencies = {}): Promise<GradcheckReport> {
  const started = performance.now();
  const naming = deps.naming ?? FIELD_NAMING;
  const options = resolveGradcheckOptions(input, naming);
  const reference = await loadReference(naming.op, deps.importReference);
  const source = resolveDataSource(naming.op, naming.argument('data'), options.data, deps);
  const { train, classNames } = loadCifarDataset(source.dir, { test: false });
  if (options.batch > train.count)
    throw new CliArgumentError(naming.op, naming.argument('batch'), `at most ${train.count} (the training records in ${source.dir})`, String(options.batch));
  const stats = computeFeatureStats(train, { dims: options.dims });
  const batch = sliceRecords(train, 0, options.batch);
  const features = standardizeFeatures(batch, stats);
  const x = { rows: features.rows, cols: features.cols, data: Float64Array.from(features.data) };
  const backend = options.impl === 'core' ? (await initBackend(options.backend)).name : null;

  const lambdas = [...new Set([0, options.lambda])];
  const precision = STENCIL_PRECISION[options.stencil];
  const numericSide = precision === 'double-double' ? 'centered differences of J in double-double arithmetic (~32 digits)' : 'float64 centered differences';
  const configurations: GradcheckConfiguration[] = [];
  for (const layers of options.layers)
    for (const batchNorm of [false, true])
      for (const lambda of lambdas) {
        // One configuration can be seconds of synchronous work: give the event loop a turn between
        // them (signals, progress output, and the RPC of a test runner hosting this call).
        await new Promise((resolve) => setImmediate(resolve));
        const label = configurationLabel(layers, batchNorm, lambda);
        deps.onProgress?.(label);
        const t0 = performance.now();
        const hiddenDims = new Array<number>(layers - 1).fill(options.hidden);
        const net = reference.createNetwork(
          { inputDim: options.dims, hiddenDims, classes: classNames.length, batchNorm, bnAffine: true },
          { kind: 'he' },
          reference.createPrng(options.seed),
        );
        const checkOptions: Reference.GradientCheckOptions = {
          h: options.step,
          stencil: options.stencil,
          precision,
          tolerance: options.tolerance,
          mode: options.mode,
          directions: options.directions,
          seed: options.seed,
          ...(options.maxEntries === null ? {} : { maxEntriesPerParameter: options.maxEntries }),
        };
        const row = (p: Reference.ParameterCheck, core?: CoreParameterComparison): GradcheckParameterRow => {
          const match = /^b(\d+)$/.exec(p.name);
          return {
            name: p.name,
            shape: [...p.shape],
            evaluated: p.evaluated,
            skippedKinks: p.skippedKinks,
            belowFloor: p.belowFloor,
            maxRelativeError: p.maxRelativeError,
            meanRelativeError: p.meanRelativeError,
            worst: p.worst && { ...p.worst, index: [...p.worst.index] },
            analyticExactlyZero: p.analyticExactlyZero,
            maxAbsNumeric: p.maxAbsNumeric,
            biasBeforeBatchNorm: batchNorm && match !== null && Number(match[1]) < layers,
            failures: p.failures,
            passed: core ? core.versusNumericPassed && core.versusReference.passed : p.passed,
            ...(core ? { core } : {}),
          };
        };
        if (options.impl === 'reference') {
          const check = reference.gradientCheck(net, x, batch.labels, lambda, checkOptions);
          const parameters = check.parameters.map((p) => row(p));
          configurations.push({
            label, layers, hiddenDims, batchNorm, lambda,
            cost: check.cost,
            absoluteFloor: check.absoluteFloor,
            seconds: (performance.now() - t0) / 1000,
            passed: check.passed,
            parameters,
          });
          continue;
        }
        const core = checkCore(reference, net, features, x, batch.labels, lambda, options, checkOptions, deps.coreGradients ?? coreGradients);
        const parameters = core.parameters.map(({ check, comparison }) => row(check, comparison));
        configurations.push({
          label, layers, hiddenDims, batchNorm, lambda,
          cost: core.cost,
          absoluteFloor: core.float64Floor,
          seconds: (performance.now() - t0) / 1000,
          passed: parameters.every((p) => p.passed),
          parameters,
        });
      }

  const rows = configurations.flatMap((c) => c.parameters);
  const sum = (f: (r: GradcheckParameterRow) => number) => rows.reduce((acc, r) => acc + f(r), 0);
  return {
    format: 'bnmlp-gradcheck',
    version: 1,
    passed: configurations.every((c) => c.passed),
    options,
    data: {
      kind: source.kind,
      dir: source.dir,
      description: source.description,
      trainFiles: [...train.sources],
      trainRecords: train.count,
      classNames: [...classNames],
      features: {
        dims: options.dims,
        of: CIFAR_PIXELS,
        preprocessing: `pixel / 255, then standardized by the mean and population std of all ${train.count} training records (a std of 0 leaves the feature centered only)`,
      },
      batch: { records: batch.count, labels: Array.from(batch.labels) },
    },
    network: {
      init: 'he',
      seed: options.seed,
      classes: classNames.length,
      initialValues: 'W ~ He; b = 0, gamma = 1, beta = 0 (createNetwork defaults)',
      batchNorm: 'after every hidden linear layer when on; affine gamma/beta; batch statistics (training mode)',
      eps: reference.DEFAULT_CONFIG.eps,
    },
    check: {
      method:
        options.impl === 'core'
          ? `@bnmlp/core's float32 analytic gradients against (a) ${numericSide} (@bnmlp/reference gradientCheck) and (b) @bnmlp/reference's float64 analytic gradients, on the same float32 weights`
          : precision === 'double-double'
            ? `${numericSide} against @bnmlp/reference's float64 analytic gradients (gradientCheck)`
            : "centered differences in float64 against @bnmlp/reference's analytic gradients (gradientCheck)",
      mode: options.mode,
      coverage:
        options.mode === 'directional'
          ? `${options.directions} random unit directions per parameter`
          : options.maxEntries === null
            ? 'every entry of every parameter'
            : `at most ${options.maxEntries} random entries per parameter`,
      stencil: options.stencil,
      precision,
      h: options.step,
      tolerance: options.tolerance,
      relativeError: '|a - n| / max(1e-8, |a| + |n|)',
      absoluteFloor:
        options.impl === 'core'
          ? `${CORE_GRADIENT_TOLERANCE.relative} * scale + 64 * eps_machine * max(1, |J|) / h, per parameter: entries differing by no more than this pass as float32 rounding`
          : `${FLOOR_FORMULA[precision]}: entries differing by no more than this pass as rounding noise`,
    },
    ...(backend === null
      ? {}
      : {
          core: {
            backend,
            weights: "the reference network's, rounded to float32 through the weights format (networkToWeights(net, 'float32') → @bnmlp/core modelFromWeights; the reference reads the same file)",
            tolerance: CORE_GRADIENT_TOLERANCE.relative,
            scale:
              options.mode === 'directional'
                ? "(a) the 2-norm of the parameter's reference gradient; (b) its largest |entry|"
                : "the parameter's largest |reference gradient entry|",
            justification: CORE_GRADIENT_TOLERANCE.source,
          },
        }),
    configurations,
    summary: {
      configurations: configurations.length,
      rows: rows.length,
      failedRows: rows.filter((r) => !r.passed).length,
      entriesEvaluated: sum((r) => r.evaluated),
      kinksSkipped: sum((r) => r.skippedKinks),
      belowFloor: sum((r) => r.belowFloor),
      maxRelativeError: Math.max(0, ...rows.map((r) => r.maxRelativeError)),
      seconds: (performance.now() - started) / 1000,
    },
  };
}

const sci = (v: number, digits = 2) => (Number.isFinite(v) ? v.toExponential(digits) : String(v));

function worstCell(row: GradcheckParameterRow): string {
  if (row.analyticExactlyZero) return `analytic exactly 0, |numeric| <= ${sci(row.maxAbsNumeric, 1)}`;
  if (!row.worst) return '-';
  return `[${row.worst.index.join(',')}] a=${sci(row.worst.analytic, 6)} n=${sci(row.worst.numeric, 6)}`;
}

function referenceWorstCell(row: GradcheckParameterRow): string {
  const b = row.core?.versusReference;
  if (!b?.worst) return '-';
  if (b.maxAbsError === 0) return row.analyticExactlyZero ? 'both exactly 0' : 'identical';
  return `[${b.worst.index.join(',')}] c=${sci(b.worst.core, 6)} r=${sci(b.worst.reference, 6)}`;
}

/** The human-readable report: settings, one table row per (configuration, parameter), a summary line. */
export function formatGradcheckReport(report: GradcheckReport): string {
  const { options: o, data, check, network, summary } = report;
  const floors = report.configurations.map((c) => c.absoluteFloor);
  const floorRange = floors.length ? `${sci(Math.min(...floors))}..${sci(Math.max(...floors))}` : '-';
  const lines = [
    `bnmlp gradcheck: ${check.method}`,
    `data:     ${data.description}`,
    `          ${data.trainRecords} training records in ${data.trainFiles.length} file(s); the batch is the first ${data.batch.records}`,
    `features: the first ${data.features.dims} of ${data.features.of}, ${data.features.preprocessing}`,
    `networks: hidden width ${o.hidden}, He init (seed ${network.seed}), b = 0, gamma = 1, beta = 0; BN with affine gamma/beta, eps ${formatNumber(network.eps)}, batch statistics`,
    `check:    ${check.mode} mode, ${check.coverage}; ${check.stencil === 4 ? 'five-point (4th-order, Richardson) centered difference' : 'two-point centered difference'}${check.precision === 'double-double' ? ' on J in double-double arithmetic (~32 digits)' : ''}, h = ${formatNumber(check.h)}, tolerance ${formatNumber(check.tolerance)} on ${check.relativeError}`,
  ];
  if (report.core) {
    const t = formatNumber(report.core.tolerance);
    lines.push(
      `float32:  @bnmlp/core on ${report.core.backend}, on the reference's weights rounded to float32; tolerance ${t} × scale, scale = ${report.core.scale}`,
      `          (@bnmlp/core's gradient limit, justified in ${report.core.justification})`,
      `          vs numeric: (a) core against ${check.precision === 'double-double' ? 'double-double' : 'float64'} centered differences: an entry passes at rel err <= ${t} or within the floor`,
      `          vs ref:     (b) core against the reference's float64 analytic gradient: max |core - ref| <= ${t} × scale ("x of limit" is the fraction used)`,
      `          "floor": ${t} × scale + the difference's float64 noise 64*eps*max(1,|J|)/h (${floorRange} here): entries within it pass and are left out of max and mean rel err`,
    );
  } else {
    const formula = check.precision === 'double-double' ? '64*2^-104*max(1,|J|)/h' : '64*eps*max(1,|J|)/h';
    lines.push(`          "floor": entries within the rounding floor ${formula} (${floorRange} here): they pass and are left out of max and mean rel err`);
  }
  lines.push('');
  const core = report.core !== undefined;
  const headers = ['configuration', 'param', 'shape', 'checked', 'kinks', 'floor', 'max rel err', 'mean rel err', 'worst entry', core ? 'vs numeric' : 'result'];
  const align: Align[] = ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right', 'left', 'left'];
  if (core) {
    headers.push('max rel err vs ref', 'worst entry vs ref', 'vs ref', 'result');
    align.push('right', 'left', 'left', 'left');
  }
  const rows = report.configurations.flatMap((c) =>
    c.parameters.map((p) => {
      const cells = [
        c.label,
        p.name,
        p.shape.join('x'),
        String(p.evaluated),
        String(p.skippedKinks),
        String(p.belowFloor),
        sci(p.maxRelativeError),
        sci(p.meanRelativeError),
        worstCell(p),
      ];
      if (!p.core) return [...cells, p.passed ? 'PASS' : `FAIL (${p.failures})`];
      const b = p.core.versusReference;
      return [
        ...cells,
        p.core.versusNumericPassed ? 'PASS' : `FAIL (${p.failures})`,
        sci(b.maxRelativeError),
        referenceWorstCell(p),
        `${b.passed ? 'PASS' : 'FAIL'} (${b.usedOfLimit === 0 ? '0' : sci(b.usedOfLimit, 1)} of limit)`,
        p.passed ? 'PASS' : 'FAIL',
      ];
    }),
  );
  lines.push(formatTable(headers, rows, align), '');
  const counts = `${summary.configurations} configurations, ${summary.entriesEvaluated} entries evaluated, ${summary.kinksSkipped} kinks skipped, ${summary.belowFloor} within the floor; worst relative error ${sci(summary.maxRelativeError)}`;
  const time = `${summary.seconds.toFixed(1)} s`;
  const both = core ? ' both comparisons' : '';
  if (report.passed) {
    lines.push(`PASS: all ${summary.rows} parameter rows pass${both} (${counts}) in ${time}`);
  } else {
    const which = (p: GradcheckParameterRow) =>
      !p.core ? '' : ` (${[p.core.versusNumericPassed ? '' : 'vs numeric', p.core.versusReference.passed ? '' : 'vs ref'].filter(Boolean).join(', ')})`;
    const failed = report.configurations.flatMap((c) => c.parameters.filter((p) => !p.passed).map((p) => `${c.label} ${p.name}${which(p)}`));
    lines.push(`FAIL: ${summary.failedRows} of ${summary.rows} parameter rows fail (${counts}) in ${time}: ${failed.join('; ')}`);
  }
  return `${lines.join('\n')}\n`;
}

function gradcheckHelp(): string {
  return [
    'Usage: bnmlp gradcheck [options]',
    '',
    "Checks @bnmlp/reference's analytic gradients against centered differences, entry by entry, for",
    'networks of each depth in --layers (hidden layers of width --hidden), each without and with batch',
    'norm, each with λ = 0 and λ = --lambda: He init from --seed with b = 0, gamma = 1, beta = 0, on the',
    'first --batch training records, reduced to the first --dims features and standardized by the',
    "training set's mean and std. Prints one row per (configuration, parameter) and a summary line, and",
    'says which data it used. Needs @bnmlp/reference (a devDependency: run it from a bnmlp checkout).',
    '',
    "By default the difference is the classic two-point one on float64 J (the report's table,",
    `tolerance ${formatNumber(STENCIL_TOLERANCE[2])}). --stencil 4 takes the five-point (Richardson-extrapolated) difference on J`,
    `evaluated in double-double arithmetic (~32 digits), h = ${formatNumber(STENCIL_STEP[4])}, tolerance ${formatNumber(STENCIL_TOLERANCE[4])}: on the default`,
    'configurations every nonzero entry then agrees to about 1e-11 or better, none excused by the',
    'rounding floor, so an analytic error of relative size 1e-6 fails.',
    '',
    "--impl core checks @bnmlp/core's float32 gradients instead, on the same weights rounded to float32,",
    '(a) against the float64 centered differences and (b) against the reference\'s float64 analytic',
    `gradients, each entry within ${formatNumber(CORE_GRADIENT_TOLERANCE.relative)} × the parameter's largest |gradient| (@bnmlp/core's own limit,`,
    `justified in ${CORE_GRADIENT_TOLERANCE.source}); the table gains columns for (b).`,
    '',
    'Options:',
    formatFlags(GRADCHECK_FLAGS),
    '',
    'Exit status: 0 when every row passes, 1 when a row fails or the check cannot run, 2 for a usage error.',
    '',
  ].join('\n');
}

export const gradcheckCommand: Command = {
  name: 'gradcheck',
  summary: 'check analytic gradients (float64 reference, or --impl core) by centered differences',
  help: gradcheckHelp,
  async run(args: readonly string[], context: CommandContext): Promise<number> {
    const parsed = parseGradcheckArgs(args);
    if (parsed.help) {
      context.stdout(gradcheckHelp());
      return 0;
    }
    const report = await runGradcheck(parsed.options, {
      ...context.deps,
      naming: parsed.naming,
      onProgress: context.progress ? (label) => context.progress!(`gradcheck: ${label} ...`) : undefined,
    });
    context.stdout(parsed.json ? `${JSON.stringify(report, null, 2)}\n` : formatGradcheckReport(report));
    return report.passed ? 0 : 1;
  },
};
