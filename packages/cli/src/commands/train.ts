import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseTrainConfig, readRunFolder, resumeRun, TrainConfigError, type RunResult, type TrainConfig, type TrainConfigInput } from '@bnmlp/trainer';
import { COMMON_FLAGS, claimFolder, countTrainingImages, parseCommon, parseInteger, parseNumber, parseWidths, parseChoice, progressSink, reportDataSpec, runFolder, shownPath, startBackend, trainRun, type CommonSettings } from '../experiments/common.js';
import { mergeConfig, PRESETS } from '../experiments/presets.js';
import { metricsRow, writeRunOutputs } from '../experiments/run-outputs.js';
import { trainingProgress } from '../progress.js';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, formatNumber, parseFlags, type FlagSpec } from '../options.js';
import { formatTable } from '../table.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp train`: one run from a preset, a config file (JSON or YAML, validated by the trainer's
schema) and flags, in that order of precedence (flags win). Writes a run folder (docs/run-format.md)
plus plots/ and summary.md, evaluates on test, and on Ctrl-C checkpoints and prints the exact
command that resumes it.
*/

const op = 'bnmlp train';

export const TRAIN_FLAGS: readonly FlagSpec[] = [
  { flag: 'config', value: '<file>', help: 'a training config, JSON or YAML (docs/run-format.md); flags override it' },
  { flag: 'preset', value: '<name>', help: `start from one of the report's settings: ${Object.keys(PRESETS).join(', ')}`, default: 'report-best' },
  { flag: 'resume', value: '<run-dir>', help: 'continue a stopped run from its checkpoint (no other training flags)' },
  { flag: 'name', value: '<name>', help: 'run folder name under --runs-dir', default: 'train-<UTC timestamp>' },
  { flag: 'hidden', value: '<w,...>', help: "hidden widths, or 'none'" },
  { flag: 'batch-norm', value: '<on|off>', help: 'batch normalization after every hidden linear layer' },
  { flag: 'eta', value: '<η>', help: 'learning rate (of the first epoch)' },
  { flag: 'decay', value: '<d>', help: 'η ← η·d after every epoch, in (0, 1]' },
  { flag: 'lambda', value: '<λ>', help: 'L2 strength: J = loss + λ Σ‖W‖²' },
  { flag: 'momentum', value: '<ρ>', help: 'momentum: v = ρv + η∇J, θ −= v' },
  { flag: 'epochs', value: '<n>', help: 'epochs' },
  { flag: 'batch-size', value: '<n>', help: 'mini-batch size (a last batch of 1 row under BN is dropped)' },
  { flag: 'train-count', value: '<n>', help: 'training images (the first n after validation is held out)' },
  { flag: 'val-count', value: '<n>', help: 'validation images held out from the end of the training files', default: 'the last 5000, or a fifth when fewer than 25,000' },
  { flag: 'flip', help: 'augment with random horizontal flips' },
  { flag: 'precise-bn', help: "recompute BN population statistics over the training split after training" },
  ...COMMON_FLAGS,
];

/** A JSON or YAML config file, parsed (not yet validated). */
export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new CliArgumentError(op, '--config', 'a readable file', `${quote(path)} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
  try {
    return ['.yaml', '.yml'].includes(extname(path).toLowerCase()) ? parseYaml(text) : JSON.parse(text);
  } catch (error) {
    throw new CliArgumentError(op, '--config', `valid ${extname(path).toLowerCase() === '.json' ? 'JSON' : 'JSON or YAML'}`, `${quote(path)}: ${(error as Error).message.split('\n')[0]}`);
  }
}

type Values = Readonly<Record<string, string | boolean | undefined>>;

/** The config the flags describe: preset, then --config, then each flag. Validated by the trainer's schema. */
export function configFromFlags(values: Values, settings: CommonSettings, cwd: string): TrainConfig {
  const preset = parseChoice(op, 'preset', values.preset, Object.keys(PRESETS), 'report-best');
  let config: TrainConfigInput = mergeConfig(PRESETS[preset].config, { seed: settings.seed, data: reportDataSpec(countTrainingImages(settings.data.dir)) });
  if (typeof values.config === 'string') config = mergeConfig(config, readConfigFile(resolve(cwd, values.config)) as object);
  const batchNorm = values['batch-norm'] === undefined ? undefined : parseChoice(op, 'batch-norm', values['batch-norm'], ['on', 'off'] as const, 'on') === 'on';
  const given = (flag: string) => values[flag] !== undefined;
  const overrides = {
    ...(given('epochs') ? { epochs: parseInteger(op, 'epochs', values.epochs, 0, 1) } : {}),
    ...(given('batch-size') ? { batchSize: parseInteger(op, 'batch-size', values['batch-size'], 0, 1) } : {}),
    ...(given('seed') ? { seed: settings.seed } : {}),
    ...(values['precise-bn'] ? { preciseBn: true } : {}),
    network: {
      ...(given('hidden') ? { hiddenDims: parseWidths(op, 'hidden', values.hidden, []) } : {}),
      ...(batchNorm === undefined ? {} : { batchNorm }),
    },
    optimizer: {
      ...(given('eta') ? { learningRate: parseNumber(op, 'eta', values.eta, 0, 'positive') } : {}),
      ...(given('lambda') ? { lambda: parseNumber(op, 'lambda', values.lambda, 0, 'non-negative') } : {}),
      ...(given('momentum') ? { momentum: parseNumber(op, 'momentum', values.momentum, 0, 'non-negative') } : {}),
      ...(given('decay') ? { schedule: { kind: 'step-decay', decay: parseNumber(op, 'decay', values.decay, 1, 'fraction') } } : {}),
    },
    data: {
      ...(given('train-count') ? { trainCount: parseInteger(op, 'train-count', values['train-count'], 0, 2) } : {}),
      ...(given('val-count') ? { validationCount: parseInteger(op, 'val-count', values['val-count'], 0, 0) } : {}),
      ...(values.flip ? { flip: true } : {}),
    },
  };
  config = mergeConfig(config, overrides);
  try {
    return parseTrainConfig(config, typeof values.config === 'string' ? values.config : 'the training flags');
  } catch (error) {
    if (error instanceof TrainConfigError) throw new CliArgumentError(op, typeof values.config === 'string' ? '--config' : 'config', 'a valid training config', error.issues.map((i) => `${i.path}: ${i.message}`).join('; '));
    throw error;
  }
}

export function formatRunResult(result: RunResult, context: CommandContext): string {
  const s = result.summary;
  const table = formatTable(['split', 'cost', 'loss', 'accuracy'], [metricsRow('training', s.train), metricsRow('validation', s.validation), metricsRow('test', s.test)].map((r) => r.map(String)), ['left', 'right', 'right', 'right']);
  return `${table}\n${s.status} after ${s.epochs} epochs in ${s.seconds.toFixed(1)} s (${s.backend}); run folder: ${shownPath(result.dir, context)}\n`;
}

/** Exit status and closing message for a run that did not complete. */
export function unfinishedRun(result: RunResult, context: CommandContext): number {
  const dir = shownPath(result.dir, context);
  if (result.summary.status === 'aborted') {
    context.stderr(`stopped; checkpoint written. Resume with:\n  bnmlp train --resume ${dir}\n`);
    return 130;
  }
  const d = result.summary.divergence!;
  context.stderr(`bnmlp train: the run diverged: ${d.message}. The last good state (epoch ${d.lastGoodEpoch}) is in ${dir}/checkpoint.bin; try a smaller --eta.\n`);
  return 1;
}

function trainHelp(): string {
  return [
    'Usage: bnmlp train [options]',
    '       bnmlp train --resume <run-dir>',
    '',
    "Trains one network (default: the report's best, --preset report-best) with mini-batch SGD and",
    'momentum, prints one line per epoch (a progress bar on a terminal), evaluates on test, and writes',
    'a run folder: config.json, history.jsonl, checkpoint.bin, weights.json, summary.json (see',
    'docs/run-format.md), plus plots/ and summary.md. Settings come from the preset, then --config,',
    'then the flags. Ctrl-C stops at the next step, writes the checkpoint and prints the resume command.',
    '',
    'Options:',
    formatFlags(TRAIN_FLAGS),
    '',
    'Exit status: 0 trained, 1 failed or diverged, 2 usage error, 130 stopped by Ctrl-C (resumable).',
    '',
  ].join('\n');
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train one network (flags, preset or config file); writes a run folder',
  help: trainHelp,
  async run(args, context) {
    const { values } = parseFlags(op, args, TRAIN_FLAGS);
    if (values.help) {
      context.stdout(trainHelp());
      return 0;
    }
    const cwd = context.cwd ?? process.cwd();
    if (typeof values.resume === 'string') {
      const conflicting = TRAIN_FLAGS.filter((f) => !['resume', 'data', 'backend', 'quiet', 'json', 'help'].includes(f.flag) && values[f.flag] !== undefined);
      if (conflicting.length > 0) throw new CliArgumentError(op, `--${conflicting[0].flag}`, 'left out with --resume (the run continues with its own config.json)', 'given');
      const dir = resolve(cwd, values.resume);
      let folder;
      try {
        folder = readRunFolder(dir);
      } catch (error) {
        throw new CliArgumentError(op, '--resume', 'a run folder written by bnmlp train', `${quote(values.resume)} (${(error as Error).message})`);
      }
      const settings = parseCommon(op, { ...values, data: values.data ?? folder.config.data.dir ?? undefined }, context);
      await startBackend(settings);
      const progress = trainingProgress(progressSink(context, settings), '');
      let result: RunResult;
      try {
        result = await resumeRun(dir, { dataDir: settings.data.dir, signal: context.signal, onEvent: progress.onEvent });
      } finally {
        progress.stop();
      }
      await writeRunOutputs(result, `bnmlp train ${shownPath(dir, context)}`);
      context.stdout(settings.json ? `${JSON.stringify({ run: result.dir, summary: result.summary }, null, 2)}\n` : formatRunResult(result, context));
      return result.summary.status === 'completed' ? 0 : unfinishedRun(result, context);
    }
    const settings = parseCommon(op, values, context);
    const config = configFromFlags(values, settings, cwd);
    const dir = runFolder(settings, 'train', typeof values.name === 'string' ? values.name : null);
    claimFolder(op, dir, settings.force);
    await startBackend(settings);
    if (!settings.quiet) progressSink(context, settings).line(`bnmlp train: ${[config.data.dims, ...config.network.hiddenDims, 10].join('-')}${config.network.batchNorm ? ' BN' : ''}, η ${formatNumber(config.optimizer.learningRate)}, λ ${formatNumber(config.optimizer.lambda)}, ${config.epochs} epochs; data: ${settings.data.description}`);
    const result = await trainRun(config, dir, '', settings, context);
    await writeRunOutputs(result, `bnmlp train ${shownPath(dir, context)}`);
    context.stdout(settings.json ? `${JSON.stringify({ run: result.dir, summary: result.summary, config: result.config }, null, 2)}\n` : formatRunResult(result, context));
    return result.summary.status === 'completed' ? 0 : unfinishedRun(result, context);
  },
};
