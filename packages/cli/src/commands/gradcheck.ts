import type * as Reference from '@bnmlp/reference';
import { CIFAR_PIXELS, computeFeatureStats, readCifarDirectory, sliceRecords, standardizeFeatures } from '@bnmlp/trainer';
import { resolveDataSource, type DataSourceContext, type DataSourceKind } from '../data-source.js';
import { CliArgumentError, CliDependencyError, quote } from '../errors.js';
import { formatFlags, formatNumber, parseFlags, type FlagSpec } from '../options.js';
import { formatTable } from '../table.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp gradcheck`: the report's gradient-check table, recomputed. For every depth in `layers`
(k linear layers, k − 1 hidden layers of width `hidden`), with and without batch norm, and for
λ = 0 and λ = `lambda`, a network made by @bnmlp/reference's createNetwork (He init from `seed`,
standard b = 0, γ = 1, β = 0) is checked by the reference's gradientCheck on the first `batch`
training records, reduced to the first `dims` features and standardized by the whole training
set's mean and std. @bnmlp/reference is a devDependency (a verification tool, not shipped), so it
is imported only when the command runs.
*/

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
  readonly step: number;
  readonly tolerance: number;
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
  tolerance: 1e-6,
};

type OptionKey = keyof GradcheckOptions;
type Kind = 'int' | 'number' | 'list' | 'mode' | 'path';

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
  step: { flag: 'step', kind: 'number', value: '<h>', help: 'centered-difference step', expected: 'a finite number > 0', ok: (v) => isNumber(v, true) },
  tolerance: {
    flag: 'tolerance', kind: 'number', value: '<t>', help: 'largest relative error accepted per entry',
    expected: 'a finite number > 0', ok: (v) => isNumber(v, true),
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
  readonly passed: boolean;
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
  readonly check: { readonly method: string; readonly mode: 'entries' | 'directional'; readonly coverage: string; readonly h: number; readonly tolerance: number; readonly relativeError: string; readonly absoluteFloor: string };
  readonly configurations: readonly GradcheckConfiguration[];
  readonly summary: {
    readonly configurations: number;
    readonly rows: number;
    readonly failedRows: number;
    readonly entriesEvaluated: number;
    readonly kinksSkipped: number;
    readonly belowFloor: number;
    readonly seconds: number;
  };
}

export interface GradcheckDependencies extends DataSourceContext {
  /** Default: `import('@bnmlp/reference')`. */
  readonly importReference?: () => Promise<ReferenceModule>;
  /** Called as each configuration starts (the CLI shows it on a terminal). */
  readonly onProgress?: (message: string) => void;
  readonly naming?: OptionNaming;
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

/** Runs every configuration and returns the whole report; a failing check is reported, not thrown. */
export async function runGradcheck(input: Partial<GradcheckOptions> = {}, deps: GradcheckDependencies = {}): Promise<GradcheckReport> {
  const started = performance.now();
  const naming = deps.naming ?? FIELD_NAMING;
  const options = resolveGradcheckOptions(input, naming);
  const reference = await loadReference(naming.op, deps.importReference);
  const source = resolveDataSource(naming.op, naming.argument('data'), options.data, deps);
  const { train, classNames } = readCifarDirectory(source.dir, { test: null });
  if (options.batch > train.count)
    throw new CliArgumentError(naming.op, naming.argument('batch'), `at most ${train.count} (the training records in ${source.dir})`, String(options.batch));
  const stats = computeFeatureStats(train, { dims: options.dims });
  const batch = sliceRecords(train, 0, options.batch);
  const features = standardizeFeatures(batch, stats);
  const x = { rows: features.rows, cols: features.cols, data: Float64Array.from(features.data) };

  const lambdas = [...new Set([0, options.lambda])];
  const configurations: GradcheckConfiguration[] = [];
  for (const layers of options.layers)
    for (const batchNorm of [false, true])
      for (const lambda of lambdas) {
        const label = configurationLabel(layers, batchNorm, lambda);
        deps.onProgress?.(label);
        const t0 = performance.now();
        const hiddenDims = new Array<number>(layers - 1).fill(options.hidden);
        const net = reference.createNetwork(
          { inputDim: options.dims, hiddenDims, classes: classNames.length, batchNorm, bnAffine: true },
          { kind: 'he' },
          reference.createPrng(options.seed),
        );
        const check = reference.gradientCheck(net, x, batch.labels, lambda, {
          h: options.step,
          tolerance: options.tolerance,
          mode: options.mode,
          directions: options.directions,
          seed: options.seed,
          ...(options.maxEntries === null ? {} : { maxEntriesPerParameter: options.maxEntries }),
        });
        const parameters = check.parameters.map((p): GradcheckParameterRow => {
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
            passed: p.passed,
          };
        });
        configurations.push({
          label, layers, hiddenDims, batchNorm, lambda,
          cost: check.cost,
          absoluteFloor: check.absoluteFloor,
          seconds: (performance.now() - t0) / 1000,
          passed: check.passed,
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
      method: "centered differences in float64 against @bnmlp/reference's analytic gradients (gradientCheck)",
      mode: options.mode,
      coverage:
        options.mode === 'directional'
          ? `${options.directions} random unit directions per parameter`
          : options.maxEntries === null
            ? 'every entry of every parameter'
            : `at most ${options.maxEntries} random entries per parameter`,
      h: options.step,
      tolerance: options.tolerance,
      relativeError: '|a - n| / max(1e-8, |a| + |n|)',
      absoluteFloor: '64 * eps_machine * max(1, |J|) / h: entries differing by no more than this pass as rounding noise',
    },
    configurations,
    summary: {
      configurations: configurations.length,
      rows: rows.length,
      failedRows: rows.filter((r) => !r.passed).length,
      entriesEvaluated: sum((r) => r.evaluated),
      kinksSkipped: sum((r) => r.skippedKinks),
      belowFloor: sum((r) => r.belowFloor),
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
    `check:    ${check.mode} mode, ${check.coverage}; h = ${formatNumber(check.h)}, tolerance ${formatNumber(check.tolerance)} on ${check.relativeError}`,
    `          "floor": entries within the rounding floor 64*eps*max(1,|J|)/h (${floorRange} here): they pass and are left out of max and mean rel err`,
    '',
  ];
  const headers = ['configuration', 'param', 'shape', 'checked', 'kinks', 'floor', 'max rel err', 'mean rel err', 'worst entry', 'result'];
  const rows = report.configurations.flatMap((c) =>
    c.parameters.map((p) => [
      c.label,
      p.name,
      p.shape.join('x'),
      String(p.evaluated),
      String(p.skippedKinks),
      String(p.belowFloor),
      sci(p.maxRelativeError),
      sci(p.meanRelativeError),
      worstCell(p),
      p.passed ? 'PASS' : `FAIL (${p.failures})`,
    ]),
  );
  lines.push(formatTable(headers, rows, ['left', 'left', 'left', 'right', 'right', 'right', 'right', 'right', 'left', 'left']), '');
  const counts = `${summary.configurations} configurations, ${summary.entriesEvaluated} entries evaluated, ${summary.kinksSkipped} kinks skipped, ${summary.belowFloor} within the floor`;
  const time = `${summary.seconds.toFixed(1)} s`;
  if (report.passed) {
    lines.push(`PASS: all ${summary.rows} parameter rows pass (${counts}) in ${time}`);
  } else {
    const failed = report.configurations.flatMap((c) => c.parameters.filter((p) => !p.passed).map((p) => `${c.label} ${p.name}`));
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
    'Options:',
    formatFlags(GRADCHECK_FLAGS),
    '',
    'Exit status: 0 when every row passes, 1 when a row fails or the check cannot run, 2 for a usage error.',
    '',
  ].join('\n');
}

export const gradcheckCommand: Command = {
  name: 'gradcheck',
  summary: "check the reference's gradients by centered differences on CIFAR-10 features",
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
