import { z } from 'zod';
import { TrainerArgumentError } from './errors.js';

/*
One training run, as data: the schema that config files (`bnmlp train --config`), run folders'
config.json, search trials and queued jobs are all validated by. Everything needed to rerun a run
is here, including which data and its checksums; nothing here is code. Defaults are the model
report's (DD2424 Assignment 3) where it states them.
*/

export const TRAIN_CONFIG_VERSION = 1;

const positiveInt = z.number().int().positive();
const nonNegative = z.number().finite().nonnegative();

export const networkSchema = z
  .object({
    /** Widths of the hidden layers: [50, 30] is the report's 3-layer network. */
    hiddenDims: z.array(positiveInt).max(32),
    batchNorm: z.boolean().default(true),
    /** Learn γ and β after each BN (the report's networks do). */
    bnAffine: z.boolean().default(true),
    /** Inside the square root: ŝ = (s − μ) / sqrt(σ² + ε). */
    eps: z.number().finite().positive().default(1e-5),
    /** α in avg = α·avg + (1 − α)·batch (PyTorch momentum = 1 − α). */
    runningAverageKeep: z.number().min(0).max(1).default(0.9),
    init: z
      .union([z.object({ kind: z.literal('he') }).strict(), z.object({ kind: z.literal('xavier') }).strict(), z.object({ kind: z.literal('normal'), sigma: nonNegative }).strict()])
      .default({ kind: 'he' }),
  })
  .strict();

/** η for every epoch: η₀·decay^epoch (the report's schedule), or the course's cyclical (triangular) schedule, per step. */
export const scheduleSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('step-decay'), decay: z.number().finite().positive().max(1).default(1) }).strict(),
  z
    .object({
      kind: z.literal('cyclical'),
      etaMin: z.number().finite().positive(),
      etaMax: z.number().finite().positive(),
      /** n_s: steps per half cycle. */
      stepSize: positiveInt,
      cycles: positiveInt,
    })
    .strict(),
]);

export const optimizerSchema = z
  .object({
    /** η (the first epoch's, for step decay; ignored by the cyclical schedule). */
    learningRate: nonNegative,
    /** ρ in v = ρv + η∇J. */
    momentum: z.number().finite().min(0).max(1).default(0.8),
    /** λ in J = loss + λ Σ‖W‖². */
    lambda: nonNegative.default(0),
    schedule: scheduleSchema.default({ kind: 'step-decay', decay: 1 }),
  })
  .strict();

const fileName = z.string().min(1).regex(/^[^/\\]+$/, 'a file name without directories');

export const dataSchema = z
  .object({
    /** A CIFAR-10 directory in any official layout, or a folder holding one; null: chosen by the program running it (the shared subset, say). */
    dir: z.string().min(1).nullable().default(null),
    /** Training files by name without extension; default every data_batch_<n>. */
    trainFiles: z.array(fileName).min(1).nullable().default(null),
    /** Validation from these files (e.g. ['data_batch_5']); when empty, `validationCount` rows are held out from the training files. */
    validationFiles: z.array(fileName).default([]),
    /** Rows held out from the end of the training files for validation (seeded random rows with selection 'random'). */
    validationCount: z.number().int().nonnegative().default(0),
    /** Training rows: the first N of what is left (or N seeded random ones); null = all. */
    trainCount: positiveInt.nullable().default(null),
    selection: z.enum(['first', 'random']).default('first'),
    /** Evaluate on test_batch after training. */
    test: z.boolean().default(true),
    /** Use the first `dims` features only (3072 = whole images; small values for gradient checks and tests). */
    dims: z.number().int().min(1).max(3072).default(3072),
    /** Random horizontal flips of training images (probability 1/2 per image per epoch). */
    flip: z.boolean().default(false),
    /** sha256 by file name of the files the run read (filled in when a run starts; checked when given). */
    checksums: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)).optional(),
  })
  .strict();

export const trainConfigSchema = z
  .object({
    version: z.literal(TRAIN_CONFIG_VERSION).default(TRAIN_CONFIG_VERSION),
    network: networkSchema,
    optimizer: optimizerSchema,
    /** Ignored by the cyclical schedule, which runs 2·stepSize·cycles steps. */
    epochs: positiveInt.default(20),
    batchSize: positiveInt.default(100),
    seed: z.number().int().min(0).max(2 ** 32 - 1).default(0),
    data: dataSchema.default(dataSchema.parse({})),
    /** After training, recompute every BN layer's population statistics over the training split (Wu & Johnson's "precise BN"). */
    preciseBn: z.boolean().default(false),
    /** Rows per chunk when evaluating in inference mode (memory is bounded by one chunk's activations). */
    evalChunkSize: positiveInt.default(1000),
  })
  .strict();

/** A validated config with every default filled in. */
export type TrainConfig = z.output<typeof trainConfigSchema>;
/** What a user may write: defaults may be left out. */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type DataSpec = z.output<typeof dataSchema>;
export type LearningRateSchedule = z.output<typeof scheduleSchema>;

/** A config that does not fit the schema; `issues` name each key by its dotted path. */
export class TrainConfigError extends TrainerArgumentError {
  override readonly name: string = 'TrainConfigError';
  constructor(
    readonly source: string,
    readonly issues: ReadonlyArray<{ readonly path: string; readonly message: string }>,
  ) {
    super('parseTrainConfig', source, 'a valid training config', issues.map((i) => `${i.path || '(top level)'}: ${i.message}`).join('; '));
    this.message = `${source}: invalid training config:\n${issues.map((i) => `  ${i.path || '(top level)'}: ${i.message}`).join('\n')}`;
  }
}

/**
 * Validates a config (parsed JSON/YAML, a job payload, …) and fills in defaults. `source` names
 * it in errors (a file path, 'job 17'). Cross-field rules the schema cannot say are checked here too.
 */
export function parseTrainConfig(input: unknown, source = 'config'): TrainConfig {
  const parsed = trainConfigSchema.safeParse(input);
  if (!parsed.success)
    throw new TrainConfigError(source, parsed.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })));
  const config = parsed.data;
  const problems: Array<{ path: string; message: string }> = [];
  const schedule = config.optimizer.schedule;
  if (schedule.kind === 'cyclical' && schedule.etaMin > schedule.etaMax)
    problems.push({ path: 'optimizer.schedule.etaMin', message: `must be <= etaMax (${schedule.etaMax}), got ${schedule.etaMin}` });
  if (config.data.validationFiles.length > 0 && config.data.validationCount > 0)
    problems.push({ path: 'data.validationCount', message: 'must be 0 when data.validationFiles is given (validation comes from those files)' });
  if (config.data.trainFiles && config.data.validationFiles.some((f) => config.data.trainFiles!.includes(f)))
    problems.push({ path: 'data.validationFiles', message: 'must not repeat a training file' });
  if (problems.length > 0) throw new TrainConfigError(source, problems);
  return config;
}

/** Total optimizer steps and epochs the schedule asks for, given the steps in one epoch. */
export function plannedEpochs(config: TrainConfig, stepsPerEpoch: number): number {
  const schedule = config.optimizer.schedule;
  if (schedule.kind === 'cyclical') return Math.ceil((2 * schedule.stepSize * schedule.cycles) / stepsPerEpoch);
  return config.epochs;
}

/** η at a global step (0-based) in epoch `epoch` (0-based). A pure function of its arguments, so a resumed run needs no schedule state. */
export function learningRateAt(config: TrainConfig, epoch: number, globalStep: number): number {
  const schedule = config.optimizer.schedule;
  if (schedule.kind === 'step-decay') return config.optimizer.learningRate * schedule.decay ** epoch;
  const { etaMin, etaMax, stepSize } = schedule;
  // Triangular: up from η_min to η_max over n_s steps, back down over the next n_s.
  const t = globalStep % (2 * stepSize);
  const rising = t <= stepSize;
  const fraction = rising ? t / stepSize : (2 * stepSize - t) / stepSize;
  return etaMin + fraction * (etaMax - etaMin);
}

/** The cyclical schedule's total steps, or null for step decay. */
export function plannedSteps(config: TrainConfig): number | null {
  const schedule = config.optimizer.schedule;
  return schedule.kind === 'cyclical' ? 2 * schedule.stepSize * schedule.cycles : null;
}
