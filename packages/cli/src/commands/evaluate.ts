import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BACKEND_NAMES, CoreArgumentError, disposeModel, initBackend, modelFromWeights, type BackendName, type CoreModel, type WeightsFile } from '@bnmlp/core';
import {
  CIFAR_PIXELS, RUN_FILES, TrainerArgumentError, dataSchema, evaluateDetailed, prepareData, readRunFolder,
  type DataSpec, type DetailedMetrics, type LabeledSplit, type PreparedData, type RunFolder,
} from '@bnmlp/trainer';
import { parseChoice, shownPath } from '../experiments/common.js';
import { resolveDataSource } from '../data-source.js';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, formatNumber, parseFlags, type FlagSpec } from '../options.js';
import { confusionFigure, writeFigure } from '../report/index.js';
import { formatTable } from '../table.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp evaluate`: a trained network on one split, the way its run saw it. For a run folder, the
split is rebuilt from its config.json (data spec and seed → prepareData: the same files, the same
held-out validation rows, the same standardisation by the training split, the checksums
verified) and the cost uses the run's λ; the confusion matrix is also drawn into the run's
plots/. A bare weights file has no config, so it is evaluated on the default split (statistics
from every training file, the test split from test_batch), and the output says so.
*/

const op = 'bnmlp evaluate';
const POSITIONAL = 'RUN_DIR|WEIGHTS';

export const EVALUATE_SPLITS = ['test', 'validation', 'train'] as const;
export type EvaluateSplit = (typeof EVALUATE_SPLITS)[number];

export const EVALUATE_FLAGS: readonly FlagSpec[] = [
  { flag: 'split', value: '<name>', help: "'test', 'validation' or 'train'", default: 'test' },
  {
    flag: 'data', value: '<dir>', help: 'CIFAR-10 in any official layout (bin, py, mat), or the folder holding cifar-10-batches-*',
    default: "a run's config.json data.dir; for a weights file $BNMLP_DATA, $BNMLP_CIFAR_DIR, the shared subset, else fixtures/cifar-10-tiny",
  },
  { flag: 'backend', value: '<name>', help: "'auto', 'tensorflow', 'wasm' or 'cpu'", default: 'auto' },
  { flag: 'json', help: 'print one JSON document instead of the tables' },
  { flag: 'help', short: 'h', help: 'show this help' },
];

export interface EvaluateResult {
  readonly format: 'bnmlp-evaluate';
  readonly version: 1;
  readonly source: { readonly kind: 'run' | 'weights'; readonly path: string; readonly weights: string };
  readonly network: { readonly inputDim: number; readonly hiddenDims: readonly number[]; readonly classes: number; readonly batchNorm: boolean };
  readonly split: EvaluateSplit;
  readonly data: {
    readonly dir: string;
    readonly format: string;
    /** How the split was made, in words. */
    readonly description: string;
    readonly rows: number;
    readonly notes: readonly string[];
  };
  readonly backend: BackendName;
  /** The run's λ; null for a bare weights file (then there is no cost). */
  readonly lambda: number | null;
  readonly metrics: { readonly accuracy: number; readonly loss: number; readonly cost: number | null };
  readonly classNames: readonly string[];
  /** Per true class: accuracy (null when the split holds none of it) and how many images. */
  readonly perClass: ReadonlyArray<{ readonly class: number; readonly name: string; readonly accuracy: number | null; readonly rows: number }>;
  /** confusion[true][predicted]. */
  readonly confusion: readonly (readonly number[])[];
  /** The figure written into the run folder (null for a bare weights file). */
  readonly plots: { readonly svg: string; readonly png: string } | null;
}

/** What the positional argument turned out to be. */
type Target =
  | { readonly kind: 'run'; readonly dir: string; readonly folder: RunFolder; readonly weightsPath: string; readonly weights: WeightsFile }
  | { readonly kind: 'weights'; readonly weightsPath: string; readonly weights: WeightsFile };

/** A failure that is not a usage error: printed as `bnmlp evaluate: …`, exit status 1. */
class EvaluateFailure extends Error {}

const EXPECTED_TARGET = 'a run folder (holding run.json) or a bnmlp weights file (weights.json)';

function readWeights(path: string, shown: string, inRun: boolean): WeightsFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    const why = error instanceof SyntaxError ? 'not JSON' : ((error as NodeJS.ErrnoException).code ?? (error as Error).message);
    if (inRun) throw new EvaluateFailure(`${shown}: cannot read the run's weights (${why})`);
    throw new CliArgumentError(op, POSITIONAL, EXPECTED_TARGET, `${quote(shown)} (${why})`);
  }
  const format = (parsed as { format?: unknown } | null)?.format;
  if (format !== 'bnmlp-weights') {
    if (inRun) throw new EvaluateFailure(`${shown}: not a bnmlp weights file (format ${JSON.stringify(format)})`);
    throw new CliArgumentError(op, POSITIONAL, EXPECTED_TARGET, `${quote(shown)} (a file that is not bnmlp weights: format ${JSON.stringify(format) ?? 'missing'})`);
  }
  return parsed as WeightsFile;
}

function whyNoWeights(folder: RunFolder, shown: string): string {
  const resume = `resume it with \`bnmlp train --resume ${shown}\`, then evaluate`;
  const summary = folder.summary;
  if (summary?.status === 'diverged')
    return `the run diverged${summary.divergence ? ` (${summary.divergence.message})` : ''}, so it has no final weights; train again with other settings`;
  if (summary?.status === 'aborted') return `the run was stopped after ${summary.epochs} epochs and has no weights.json yet: ${resume}`;
  if (folder.hasCheckpoint) return `the run has not completed (no weights.json; still running, or killed): ${resume}`;
  return 'the run has no weights.json and no checkpoint (it never finished an epoch)';
}

function resolveTarget(text: string, context: CommandContext): Target {
  const path = resolve(context.cwd ?? process.cwd(), text);
  if (!existsSync(path)) throw new CliArgumentError(op, POSITIONAL, EXPECTED_TARGET, `${quote(text)} (no such file or directory)`);
  if (!statSync(path).isDirectory()) return { kind: 'weights', weightsPath: path, weights: readWeights(path, text, false) };
  if (!existsSync(join(path, RUN_FILES.run)))
    throw new CliArgumentError(op, POSITIONAL, EXPECTED_TARGET, `${quote(text)} (a folder without ${RUN_FILES.run})`);
  let folder: RunFolder;
  try {
    folder = readRunFolder(path);
  } catch (error) {
    throw new CliArgumentError(op, POSITIONAL, 'a run folder written by bnmlp train', `${quote(text)} (${(error as Error).message})`);
  }
  const shown = shownPath(path, context);
  if (!folder.hasWeights) throw new CliArgumentError(op, POSITIONAL, 'a completed run (with weights.json)', `${quote(text)}: ${whyNoWeights(folder, shown)}`);
  const weightsPath = join(path, RUN_FILES.weights);
  return { kind: 'run', dir: path, folder, weightsPath, weights: readWeights(weightsPath, join(shown, RUN_FILES.weights), true) };
}

interface Plan {
  readonly spec: DataSpec;
  readonly dataDir: string;
  readonly seed: number;
  readonly lambda: number | null;
  readonly chunkSize: number;
  readonly notes: string[];
}

/** The data spec, directory and seed the split is rebuilt from; usage errors before anything is read. */
function plan(target: Target, split: EvaluateSplit, dataFlag: string | null, context: CommandContext): Plan {
  const notes: string[] = [];
  const given = dataFlag === null ? null : resolveDataSource(op, '--data', dataFlag, { env: context.env, cwd: context.cwd });
  const inputDim = (target.weights.config as { inputDim?: unknown } | undefined)?.inputDim;
  if (target.kind === 'weights') {
    const spec = dataSchema.parse({});
    if (split === 'validation')
      throw new CliArgumentError(op, '--split', "'test' or 'train' for a bare weights file (it has no config, so no validation split: pass its run folder)", quote(split));
    if (inputDim !== spec.dims)
      throw new CliArgumentError(
        op, POSITIONAL,
        `weights for ${spec.dims} input features (whole ${CIFAR_PIXELS}-value images: a bare weights file is evaluated on the default split; for a network trained on the first d features pass its run folder)`,
        `${quote(shownPath(target.weightsPath, context))} (inputDim ${String(inputDim)})`,
      );
    const source = given ?? resolveDataSource(op, '--data', null, { env: context.env, cwd: context.cwd });
    notes.push(`a bare weights file has no config: evaluated on the default split (standardised by all training files, test from test_batch), which need not be the split it was trained with; data: ${source.description}`);
    return { spec, dataDir: source.dir, seed: 0, lambda: null, chunkSize: 1000, notes };
  }
  const config = target.folder.config;
  let spec = config.data;
  if (inputDim !== spec.dims)
    throw new CliArgumentError(op, POSITIONAL, `a run whose weights take its config's ${spec.dims} input features (data.dims)`, `${quote(shownPath(target.dir, context))} (weights.json has inputDim ${String(inputDim)})`);
  if (split === 'validation' && spec.validationFiles.length === 0 && spec.validationCount === 0)
    throw new CliArgumentError(op, '--split', "'test' or 'train' for this run (it held out no validation images)", quote(split));
  if (split === 'test' && !spec.test) {
    spec = { ...spec, test: true };
    notes.push('the run did not evaluate on test_batch (data.test false); it is read here, standardised like the other splits');
  }
  let dataDir: string;
  if (given) {
    dataDir = given.dir;
    if (config.data.dir && resolve(config.data.dir) !== resolve(given.dir)) notes.push(`data from --data ${given.dir} instead of the run's ${config.data.dir} (the checksums are still verified)`);
  } else if (config.data.dir) {
    dataDir = config.data.dir;
    if (!existsSync(dataDir))
      throw new CliArgumentError(op, '--data', `given: the run's data directory ${dataDir} (config.json data.dir) no longer exists; pass the same data with --data`, 'nothing');
  } else {
    const source = resolveDataSource(op, '--data', null, { env: context.env, cwd: context.cwd });
    dataDir = source.dir;
    notes.push(`the run's config names no data directory: ${source.description}`);
  }
  return { spec, dataDir, seed: config.seed, lambda: config.optimizer.lambda, chunkSize: config.evalChunkSize, notes };
}

function splitOf(data: PreparedData, split: EvaluateSplit): LabeledSplit {
  const chosen = split === 'test' ? data.test : split === 'validation' ? data.validation : data.train;
  // plan() has ruled the missing ones out; a validation split can still be empty when the data is tiny.
  if (!chosen || chosen.x.rows === 0) throw new EvaluateFailure(`the ${split} split of ${data.source.dir} holds no images`);
  return chosen;
}

function describeSplit(target: Target, split: EvaluateSplit, spec: DataSpec, data: PreparedData, rows: number): string {
  const trainRows = data.train.x.rows;
  const standardised = `standardised by the mean and std of the ${trainRows} training images`;
  if (split === 'test') return `test: the ${rows} images of test_batch, ${standardised}${target.kind === 'run' ? ' (as the run did)' : ''}`;
  if (split === 'train') return `train: the ${rows} training images${target.kind === 'run' ? ' the run trained on' : ' of every training file'}, ${standardised}`;
  const from = spec.validationFiles.length > 0 ? spec.validationFiles.join(', ') : `held out from the ${spec.selection === 'random' ? 'training files (seeded random rows)' : 'end of the training files'}`;
  return `validation: the ${rows} images the run validated on (${from}), ${standardised}`;
}

const pct = (v: number | null) => (v === null || Number.isNaN(v) ? '-' : `${(100 * v).toFixed(2)}%`);

/** Evaluates; writes the confusion figure into a run folder (only once everything else succeeded). */
export async function runEvaluate(targetText: string, split: EvaluateSplit, dataFlag: string | null, backendName: BackendName | 'auto', context: CommandContext): Promise<EvaluateResult> {
  const target = resolveTarget(targetText, context);
  const p = plan(target, split, dataFlag, context);
  let data: PreparedData;
  try {
    data = prepareData(p.spec, p.dataDir, p.seed);
  } catch (error) {
    if (error instanceof TrainerArgumentError) throw new EvaluateFailure(error.message);
    throw error;
  }
  const labeled = splitOf(data, split);
  const backend = await initBackend(backendName);
  let model: CoreModel;
  try {
    model = modelFromWeights(target.weights);
  } catch (error) {
    if (error instanceof CoreArgumentError) throw new EvaluateFailure(`${shownPath(target.weightsPath, context)}: ${error.message}`);
    throw error;
  }
  let metrics: DetailedMetrics;
  try {
    if (model.config.classes !== data.classNames.length)
      throw new CliArgumentError(op, POSITIONAL, `weights for the data's ${data.classNames.length} classes`, `${quote(shownPath(target.weightsPath, context))} (${model.config.classes} classes)`);
    metrics = evaluateDetailed(model, labeled, p.lambda ?? 0, p.chunkSize);
  } finally {
    disposeModel(model);
  }
  const classNames = [...data.classNames];
  const confusion = metrics.confusion.map((row) => [...row]);
  let plots: EvaluateResult['plots'] = null;
  if (target.kind === 'run') {
    const dir = join(target.dir, 'plots');
    mkdirSync(dir, { recursive: true });
    const title = `${shownPath(target.dir, context)}: confusion matrix on the ${split} split`;
    const paths = await writeFigure(dir, `confusion-${split}`, confusionFigure(confusion, classNames, { title }));
    plots = { svg: paths.svg, png: paths.png };
  }
  const config = model.config;
  return {
    format: 'bnmlp-evaluate',
    version: 1,
    source: { kind: target.kind, path: target.kind === 'run' ? target.dir : target.weightsPath, weights: target.weightsPath },
    network: { inputDim: config.inputDim, hiddenDims: [...config.hiddenDims], classes: config.classes, batchNorm: config.batchNorm },
    split,
    data: { dir: data.source.dir, format: data.source.format, description: describeSplit(target, split, p.spec, data, labeled.x.rows), rows: labeled.x.rows, notes: [...p.notes, ...data.notes] },
    backend: backend.name,
    lambda: p.lambda,
    metrics: { accuracy: metrics.accuracy, loss: metrics.loss, cost: p.lambda === null ? null : metrics.cost },
    classNames,
    perClass: classNames.map((name, c) => ({
      class: c,
      name,
      accuracy: Number.isNaN(metrics.perClassAccuracy[c]) ? null : metrics.perClassAccuracy[c],
      rows: confusion[c].reduce((a, b) => a + b, 0),
    })),
    confusion,
    plots,
  };
}

export function formatEvaluate(result: EvaluateResult, context: CommandContext): string {
  const n = result.network;
  const what = result.source.kind === 'run' ? 'run folder' : 'weights file';
  const cost = result.metrics.cost === null ? 'cost -  (no λ: a bare weights file)' : `cost ${result.metrics.cost.toFixed(4)} (λ = ${formatNumber(result.lambda!)})`;
  const lines = [
    `bnmlp evaluate: ${shownPath(result.source.path, context)} (${what}), ${result.split} split`,
    `network:  ${[n.inputDim, ...n.hiddenDims, n.classes].join('-')}, ${n.batchNorm && n.hiddenDims.length > 0 ? 'batch norm' : 'no batch norm'}, inference mode (running averages), backend ${result.backend}`,
    `data:     ${result.data.description}, from ${result.data.dir} (${result.data.format})`,
    ...result.data.notes.map((note) => `note:     ${note}`),
    '',
    `accuracy ${pct(result.metrics.accuracy)}   loss ${result.metrics.loss.toFixed(4)}   ${cost}   on ${result.data.rows} images`,
    '',
    formatTable(['class', 'accuracy', 'images'], result.perClass.map((c) => [c.name, pct(c.accuracy), String(c.rows)]), ['left', 'right', 'right']),
    '',
    'confusion matrix (rows: true class, columns: predicted)',
    formatTable(
      ['true \\ predicted', ...result.classNames],
      result.confusion.map((row, c) => [result.classNames[c], ...row.map(String)]),
      ['left', ...result.classNames.map(() => 'right' as const)],
    ),
  ];
  if (result.plots) lines.push('', `plots:    ${shownPath(result.plots.png, context)} and ${shownPath(result.plots.svg, context)}`);
  return `${lines.join('\n')}\n`;
}

function evaluateHelp(): string {
  return [
    `Usage: bnmlp evaluate <${POSITIONAL}> [options]`,
    '',
    "Evaluates a trained network (inference mode) on one split: accuracy, loss, cost with the run's λ,",
    'accuracy per class and the confusion matrix (rows: true class, columns: predicted).',
    '',
    "RUN_DIR: a run folder of `bnmlp train` (or an experiment's). The split is rebuilt exactly as the run",
    "made it from its config.json (the same files, held-out rows and standardisation; the data's checksums",
    "are verified), from the run's data directory or --data. Also writes plots/confusion-<split>.png and .svg.",
    'A run that has not completed has no weights.json: resume it (`bnmlp train --resume RUN_DIR`) first.',
    '',
    'WEIGHTS: a bare weights file (docs/weights-format.md) for whole images (3072 inputs). Without a config,',
    'the split is the default one: standardised by every training file, test from test_batch (or --split',
    'train). Nothing is written.',
    '',
    'Options:',
    formatFlags(EVALUATE_FLAGS),
    '',
    'Exit status: 0 evaluated, 1 failure (unreadable weights, data that differs from the run\'s checksums), 2 usage error.',
    '',
  ].join('\n');
}

export const evaluateCommand: Command = {
  name: 'evaluate',
  summary: "a trained network's accuracy, loss, per-class accuracy and confusion matrix on a split",
  help: evaluateHelp,
  async run(args: readonly string[], context: CommandContext): Promise<number> {
    const { values, positionals } = parseFlags(op, args, EVALUATE_FLAGS, { name: POSITIONAL, min: 0, max: 1 });
    if (values.help === true) {
      context.stdout(evaluateHelp());
      return 0;
    }
    if (positionals.length === 0) throw new CliArgumentError(op, POSITIONAL, 'given', 'nothing');
    const split = parseChoice(op, 'split', values.split, EVALUATE_SPLITS, 'test');
    const backend = parseChoice(op, 'backend', values.backend, ['auto', ...BACKEND_NAMES] as const, 'auto');
    try {
      const result = await runEvaluate(positionals[0], split, typeof values.data === 'string' ? values.data : null, backend, context);
      context.stdout(values.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatEvaluate(result, context));
      return 0;
    } catch (error) {
      if (!(error instanceof EvaluateFailure)) throw error;
      context.stderr(`${op}: ${error.message}\n`);
      return 1;
    }
  },
};
