import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CIFAR_PIXELS, computeFeatureStats, loadCifarDataset, sliceRecords, standardizeFeatures } from '@bnmlp/trainer';
import { resolveDataSource } from '../data-source.js';
import { CATALOGUE, catalogueEntry } from '../diagnose/catalogue.js';
import { createCase, caseValues, parseCase, type CaseConfig, type DiagnoseCase } from '../diagnose/case.js';
import { DEFAULT_MATCH_TOLERANCE, DEFAULT_TOLERANCE, diagnose } from '../diagnose/diagnosis.js';
import { answerValues } from '../diagnose/example.js';
import { formatOf, readNamedValues, writeNamedValues } from '../diagnose/files.js';
import { CaseLab, FULL_DIFFERENCE_LIMIT } from '../diagnose/lab.js';
import type { ReferenceModule } from '../diagnose/model.js';
import { formatDiagnosis } from '../diagnose/report.js';
import { CliArgumentError, quote } from '../errors.js';
import { parseInteger, parseNumber, parseWidths } from '../experiments/common.js';
import { formatFlags, formatNumber, parseFlags, type FlagSpec } from '../options.js';
import type { Command, CommandContext } from './command.js';
import { loadReference } from './gradcheck.js';

/*
`bnmlp diagnose`: exact gradients for other people's batch-norm MLPs, and a name for their bug.

  export   writes a case (weights, batch, λ, ε, a README) as .npz, .mat or .json
  check    judges their gradients on it, array by array, and matches wrong ones against the
           catalogue of known causes (diagnose/catalogue.ts)
  example  writes the gradients a program with one catalogued mistake would hand in (to see a diagnosis)

@bnmlp/reference (a devDependency) is loaded when a subcommand runs, as for `bnmlp gradcheck`.
*/

export const DEFAULT_CASE: CaseConfig = {
  layers: 3,
  dims: 20,
  hidden: [50, 30],
  classes: 10,
  batch: 10,
  batchNorm: false,
  affine: false,
  lambda: 0.01,
  eps: 1e-3,
  runningAverageKeep: 0.9,
  seed: 1,
};

export const EXPORT_FLAGS: readonly FlagSpec[] = [
  { flag: 'out', value: '<file>', help: 'the case file: .npz, .mat or .json (by extension)' },
  { flag: 'layers', value: '<k>', help: 'linear layers (k − 1 hidden layers)', default: String(DEFAULT_CASE.layers) },
  { flag: 'hidden', value: '<w,...>', help: 'hidden widths, k − 1 of them', default: `${DEFAULT_CASE.hidden.join(',')} (for k = 3; 50 each otherwise)` },
  { flag: 'dims', value: '<d>', help: `input features: the first d of ${CIFAR_PIXELS}, standardized`, default: String(DEFAULT_CASE.dims) },
  { flag: 'batch', value: '<n>', help: 'samples in the batch (the first n training records)', default: String(DEFAULT_CASE.batch) },
  { flag: 'bn', help: 'batch norm after every hidden linear layer' },
  { flag: 'affine', help: 'learnable gamma and beta after batch norm (with --bn)' },
  { flag: 'lambda', value: '<λ>', help: 'L2 weight: J = mean CE + λΣ‖W‖²', default: formatNumber(DEFAULT_CASE.lambda) },
  { flag: 'eps', value: '<ε>', help: 'batch norm ε (large enough that ε mistakes show)', default: formatNumber(DEFAULT_CASE.eps) },
  { flag: 'seed', value: '<s>', help: 'seed of the weights', default: String(DEFAULT_CASE.seed) },
  { flag: 'data', value: '<dir>', help: 'CIFAR-10 in any official layout', default: '$BNMLP_DATA, $BNMLP_CIFAR_DIR, the shared subset, else fixtures/cifar-10-tiny' },
  { flag: 'force', help: 'overwrite --out' },
  { flag: 'help', short: 'h', help: 'show this help' },
];

export const CHECK_FLAGS: readonly FlagSpec[] = [
  { flag: 'json', help: 'print the diagnosis as one JSON document' },
  { flag: 'tolerance', value: '<t>', help: 'an array is right when every |yours − exact| ≤ t × its scale', default: formatNumber(DEFAULT_TOLERANCE) },
  { flag: 'help', short: 'h', help: 'show this help' },
];

export const EXAMPLE_FLAGS: readonly FlagSpec[] = [
  { flag: 'cause', value: '<name>', help: 'a catalogue entry (listed above)' },
  { flag: 'out', value: '<file>', help: 'the answer file: .npz, .mat or .json' },
  { flag: 'layout', value: '<layout>', help: "'row-sample' (W dIn×dOut) or 'column-sample' (W dOut×dIn)", default: 'row-sample' },
  { flag: 'force', help: 'overwrite --out' },
  { flag: 'help', short: 'h', help: 'show this help' },
];

export function diagnoseHelp(): string {
  const width = Math.max(...CATALOGUE.map((e) => e.name.length)) + 2;
  const entries = (kind: 'mistake' | 'convention', sides: string[]) =>
    CATALOGUE.filter((e) => e.kind === kind && e.sides.some((s) => sides.includes(s))).map((e) => `    ${e.name.padEnd(width)}${e.title}`);
  return [
    'Usage: bnmlp diagnose export --out CASE [options]',
    '       bnmlp diagnose check CASE YOURS [--json] [--tolerance t]',
    '       bnmlp diagnose example CASE --cause NAME --out YOURS [--layout row-sample|column-sample]',
    '',
    'Checks anyone\'s batch-norm MLP gradients (NumPy, MATLAB, anything that writes .npz, .mat or .json) against',
    'exact float64 ones, and names the known mistake that reproduces wrong ones. 1. `export` writes a case:',
    'weights and a batch. 2. Your code computes the gradients of J on it and saves them under the same names.',
    '3. `check` prints, per array: right or wrong, max relative error, worst entry; for wrong ones the causes',
    'from the catalogue below whose gradients match yours, best first, with the fix. `example` writes what a',
    'program with one catalogued mistake would hand in.',
    '',
    'Network and cost: {Linear → BatchNorm → ReLU} × (k−1) → Linear → softmax; J = mean cross-entropy over',
    'the batch + λ·Σ‖W‖² (gradient 2λW; b, gamma, beta not penalized); BN in training mode with the batch\'s',
    'mean and biased variance (divide by n), ŝ = (s − μ)/sqrt(σ² + ε), then gamma·ŝ + beta.',
    '',
    'Case file (.npz: numpy.load; .mat: MATLAB load; .json: one object; chosen by extension):',
    "  format 'bnmlp-diagnose-case', version 1, README (this layout, the case's numbers, J at its weights)",
    '  layers, dims, hidden, classes, batch, batch_norm, affine, lambda, eps, running_average_keep, seed, cost, loss',
    '  X  n×d, one sample per row          y  n labels 0..K−1 (add 1 in MATLAB)      Y  n×K one-hot',
    '  W1 … Wk  dIn×dOut (S = X·W + b)     b1 …, gamma1 …, beta1 …  vectors of dOut',
    '  running_mean1 …, running_var1 …  BN running averages (a correct gradient check never uses them)',
    "  That is the row-sample layout (bnmlp's). Column-sample code (the DD2424 course's): transpose every",
    "  matrix: X' is d×n, Y' is K×n, W' is dOut×dIn with S = W·X + b, b a dOut×1 column.",
    '',
    'Your file (YOURS, .npz/.mat/.json), either layout, transposes recognised (square W: by value):',
    '  W1, b1, gamma1, beta1, …     your analytic gradients of J, every parameter (gammas1/betas1 read too;',
    '                               in .mat a cell array W counts as W1, W2, …)',
    '  num_W1, num_b1, …            optional: your numeric gradients (any subset)',
    '  h                            optional: their step (else 1e-1 … 1e-8 are tried)',
    '  relerr_W1, …                 optional: the relative error your checker reported, one number each',
    '',
    'Judging: an array is right when every entry has |yours − exact| ≤ tolerance × scale, scale = the',
    "parameter's largest |exact entry| (at least 1 % of the network's largest: the bias before BN is exactly 0).",
    `A cause matches when all your arrays of that side agree with its variant within ${formatNumber(DEFAULT_MATCH_TOLERANCE)} × scale (or 10 ×`,
    'tolerance if larger). Numeric entries whose ±h step flips a ReLU are left out. Convention differences',
    '(sum vs mean, λ/2, another ε) are reported as conventions, judged against the exact gradient of your cost.',
    '',
    'Known causes:',
    '  numeric side (your num_*):',
    ...entries('mistake', ['numeric']).filter((l) => !/eps-outside|unbiased|off-by-one/.test(l)),
    '  your checker (relerr_*):',
    ...entries('mistake', ['check']),
    '  analytic side (your W1, b1, …):',
    ...entries('mistake', ['analytic']),
    '    (eps-outside-sqrt, unbiased-variance and layer-index-off-by-one show on the numeric side too: their forward pass or names differ)',
    '  conventions (not bugs):',
    ...entries('convention', ['analytic', 'numeric']),
    '',
    'export options:',
    formatFlags(EXPORT_FLAGS),
    '',
    'check options:',
    formatFlags(CHECK_FLAGS),
    '',
    'example options:',
    formatFlags(EXAMPLE_FLAGS),
    '',
    'Exit status: check: 0 when every array you gave is right (conventions included), 1 when one is wrong;',
    'all: 2 for a usage error or an unusable file (named with the parameter), 1 for other failures.',
    '',
  ].join('\n');
}

export interface DiagnoseDependencies {
  readonly importReference?: () => Promise<ReferenceModule>;
}

/** The features and labels of a case: the first 2n training records, the first d features standardized by the training set. */
export function caseData(op: string, config: CaseConfig, dataDir: string | null, context: Pick<CommandContext, 'env' | 'cwd'>): { x: DiagnoseCase['x']; labels: Uint8Array; other: DiagnoseCase['x']; description: string } {
  const source = resolveDataSource(op, '--data', dataDir, { env: context.env, cwd: context.cwd });
  const { train } = loadCifarDataset(source.dir, { test: false });
  if (2 * config.batch > train.count)
    throw new CliArgumentError(op, '--batch', `at most ${Math.floor(train.count / 2)} (half the ${train.count} training records in ${source.dir}: the next batch sets the running averages)`, String(config.batch));
  const stats = computeFeatureStats(train, { dims: config.dims });
  const matrix = (start: number) => {
    const f = standardizeFeatures(sliceRecords(train, start, start + config.batch), stats);
    return { rows: f.rows, cols: f.cols, data: Float64Array.from(f.data) };
  };
  return {
    x: matrix(0),
    labels: Uint8Array.from(sliceRecords(train, 0, config.batch).labels),
    other: matrix(config.batch),
    description: `${source.description}; records 1..${config.batch} (running averages from records ${config.batch + 1}..${2 * config.batch}), the first ${config.dims} features standardized by the mean and std of all ${train.count} training records`,
  };
}

export async function buildCase(config: CaseConfig, dataDir: string | null, context: Pick<CommandContext, 'env' | 'cwd'> = {}, deps: DiagnoseDependencies = {}): Promise<{ ref: ReferenceModule; c: DiagnoseCase }> {
  const op = 'bnmlp diagnose export';
  const ref = await loadReference(op, deps.importReference);
  return { ref, c: createCase(ref, config, caseData(op, config, dataDir, context)) };
}

function outPath(op: string, values: Readonly<Record<string, string | boolean | undefined>>, context: CommandContext): string {
  if (typeof values.out !== 'string') throw new CliArgumentError(op, '--out', 'given (a .npz, .mat or .json file)', 'nothing');
  if (!formatOf(values.out)) throw new CliArgumentError(op, '--out', 'a file ending in .npz, .mat or .json', quote(values.out));
  const path = resolve(context.cwd ?? process.cwd(), values.out);
  if (existsSync(path) && values.force !== true) throw new CliArgumentError(op, '--out', 'a new file (pass --force to overwrite)', quote(values.out));
  return path;
}

export function parseExportConfig(op: string, values: Readonly<Record<string, string | boolean | undefined>>): CaseConfig {
  const hiddenGiven = values.hidden !== undefined;
  let layers = parseInteger(op, 'layers', values.layers, DEFAULT_CASE.layers, 1, 20);
  let hidden = parseWidths(op, 'hidden', values.hidden, []);
  if (!hiddenGiven) hidden = layers === 3 ? [...DEFAULT_CASE.hidden] : new Array<number>(layers - 1).fill(50);
  else if (values.layers === undefined) layers = hidden.length + 1;
  if (hidden.length !== layers - 1) throw new CliArgumentError(op, '--hidden', `${layers - 1} widths for --layers ${layers}`, quote(String(values.hidden)));
  const batchNorm = values.bn === true;
  if (values.affine === true && !batchNorm) throw new CliArgumentError(op, '--affine', 'used with --bn (gamma and beta belong to batch norm)', '--affine alone');
  return {
    layers,
    hidden,
    dims: parseInteger(op, 'dims', values.dims, DEFAULT_CASE.dims, 1, CIFAR_PIXELS),
    classes: 10,
    batch: parseInteger(op, 'batch', values.batch, DEFAULT_CASE.batch, 2),
    batchNorm,
    affine: values.affine === true,
    lambda: parseNumber(op, 'lambda', values.lambda, DEFAULT_CASE.lambda, 'non-negative'),
    eps: parseNumber(op, 'eps', values.eps, DEFAULT_CASE.eps, 'positive'),
    runningAverageKeep: DEFAULT_CASE.runningAverageKeep,
    seed: parseInteger(op, 'seed', values.seed, DEFAULT_CASE.seed, 0, 0xffffffff),
  };
}

/** Reads a case file and the reference: the start of `check` and `example`. */
async function openCase(path: string, shown: string, deps: DiagnoseDependencies, op: string): Promise<CaseLab> {
  const values = readNamedValues(path, shown);
  const c = parseCase(values, shown);
  const ref = await loadReference(op, deps.importReference);
  return new CaseLab(ref, c);
}

const SUBCOMMANDS = ['export', 'check', 'example'] as const;

/**
 * This package's version, for the case's README: from the nearest package.json of @bnmlp/cli above
 * this module (src/, dist/ or a test build elsewhere); importing cli.ts's version() here would be an
 * import cycle.
 */
function bnmlpVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    try {
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (manifest.name === '@bnmlp/cli' && manifest.version) return manifest.version;
    } catch {
      // no package.json here
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}

export const diagnoseCommand: Command = {
  name: 'diagnose',
  summary: "check anyone's batch-norm MLP gradients (.npz, .mat, .json) and name the bug",
  help: diagnoseHelp,
  async run(args: readonly string[], context: CommandContext): Promise<number> {
    const [sub, ...rest] = args;
    const deps = (context.deps ?? {}) as DiagnoseDependencies;
    if (sub === undefined || sub === '--help' || sub === '-h' || rest.includes('--help') || rest.includes('-h')) {
      if (sub === undefined) {
        context.stderr(diagnoseHelp());
        return 2;
      }
      context.stdout(diagnoseHelp());
      return 0;
    }
    const cwd = context.cwd ?? process.cwd();
    switch (sub) {
      case 'export': {
        const op = 'bnmlp diagnose export';
        const { values } = parseFlags(op, rest, EXPORT_FLAGS);
        const config = parseExportConfig(op, values);
        const path = outPath(op, values, context);
        const { c } = await buildCase(config, typeof values.data === 'string' ? values.data : null, context, deps);
        writeNamedValues(path, caseValues(c, bnmlpVersion()));
        context.stdout(
          [
            `bnmlp diagnose: wrote ${values.out}`,
            `  ${config.layers}-layer MLP ${[config.dims, ...config.hidden, config.classes].join(' → ')}, ${config.batchNorm ? `batch norm${config.affine ? ' with gamma/beta' : ''}, eps ${formatNumber(config.eps)}` : 'no batch norm'}, λ = ${formatNumber(config.lambda)}, batch of ${config.batch}; J = ${c.cost}`,
            `  data: ${c.dataSource}`,
            `  next: compute your gradients of J on it, save them as W1, b1, … (optionally num_W1, …, h), then: bnmlp diagnose check ${values.out} YOURS`,
            '',
          ].join('\n'),
        );
        return 0;
      }
      case 'check': {
        const op = 'bnmlp diagnose check';
        const { values, positionals } = parseFlags(op, rest, CHECK_FLAGS, { name: 'CASE YOURS', min: 2, max: 2 });
        const tolerance = parseNumber(op, 'tolerance', values.tolerance, DEFAULT_TOLERANCE, 'positive');
        const [caseFile, theirFile] = positionals;
        const lab = await openCase(resolve(cwd, caseFile), caseFile, deps, op);
        const theirs = readNamedValues(resolve(cwd, theirFile), theirFile);
        const d = diagnose(lab, theirs, { case: caseFile, theirs: theirFile }, { tolerance });
        context.stdout(values.json === true ? `${JSON.stringify(d, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n` : formatDiagnosis(d));
        return d.passed ? 0 : 1;
      }
      case 'example': {
        const op = 'bnmlp diagnose example';
        const { values, positionals } = parseFlags(op, rest, EXAMPLE_FLAGS, { name: 'CASE', min: 1, max: 1 });
        if (typeof values.cause !== 'string') throw new CliArgumentError(op, '--cause', `one of ${CATALOGUE.map((e) => e.name).join(', ')}`, 'nothing');
        const entry = catalogueEntry(values.cause);
        if (!entry) throw new CliArgumentError(op, '--cause', `one of ${CATALOGUE.map((e) => e.name).join(', ')}`, quote(values.cause));
        const layout = values.layout === undefined ? 'row-sample' : values.layout;
        if (layout !== 'row-sample' && layout !== 'column-sample') throw new CliArgumentError(op, '--layout', "'row-sample' or 'column-sample'", quote(String(layout)));
        const path = outPath(op, values, context);
        const lab = await openCase(resolve(cwd, positionals[0]), positionals[0], deps, op);
        if (lab.entries !== undefined)
          throw new CliArgumentError(op, 'CASE', `a case of at most ${FULL_DIFFERENCE_LIMIT} parameters (example computes numeric gradients of every entry)`, `${lab.totalEntries} parameters`);
        if (!entry.applies(lab.c.config)) throw new CliArgumentError(op, '--cause', `a cause that can happen on this case (${entry.name} needs ${entry.name.includes('l2') || entry.name.includes('penalty') ? 'λ > 0' : 'batch norm'})`, quote(entry.name));
        writeNamedValues(path, answerValues(entry.simulate(lab), layout));
        context.stdout(`bnmlp diagnose: wrote ${values.out}: the gradients a program with '${entry.name}' (${entry.title}) hands in, ${layout} layout\n`);
        return 0;
      }
      default:
        throw new CliArgumentError('bnmlp diagnose', 'subcommand', SUBCOMMANDS.map(quote).join(', ').replace(/, ([^,]*)$/, ' or $1'), quote(sub));
    }
  },
};
