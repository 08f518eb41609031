import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  dataChecksumsFor, fineRanges, InProcessExecutor, LocalProcessExecutor, QueueExecutor, readSearchResults, runSearch,
  type SearchOutcome, type SearchRanges, type TrainConfigInput, type TrialExecutor,
} from '@bnmlp/trainer';
import { countProgress } from '../progress.js';
import { searchScatterFigure } from '../report/index.js';
import { countTrainingImages, progressSink, type CommonSettings } from './common.js';
import { mergeConfig, PRESETS, SEARCH_DEFAULTS } from './presets.js';
import { REPORTED } from './reported.js';
import { percent } from './run-outputs.js';
import { dataNote, figureFile, type SectionFigure, type SectionOptions, type SectionResult } from './sections.js';
import type { CommandContext } from '../commands/command.js';

/*
The report's random searches over η and λ (log-uniform), coarse then fine, each trial a full
training run, run in parallel on worker processes (trainer's LocalProcessExecutor), in this
process with one worker, or on `bnmlp worker` processes anywhere through a queue in Redis
(trainer's QueueExecutor, `--queue`). A stage's folder holds results.jsonl (one trial a line,
appended as each ends), weights/ and plots/; running the same stage again in the same folder
resumes it.
*/

export const SEARCH_RESULTS = 'results.jsonl';

export interface SearchStageOptions {
  readonly stage: 'coarse' | 'fine';
  readonly trials: number;
  readonly ranges: SearchRanges;
  /** Worker processes; 1 runs trials in this process. */
  readonly workers: number;
  readonly epochs?: number;
  /** An executor to use instead; the caller closes it. */
  readonly executor?: TrialExecutor;
  /** Run the trials on a BullMQ queue in Redis (`bnmlp worker` processes) instead of worker processes here. */
  readonly queue?: SearchQueueOptions;
}

export interface SearchQueueOptions {
  /** redis://[:password@]host:port[/db] */
  readonly url: string;
  readonly queueName?: string;
}

/**
 * The queue's executor, connected (a wrong URL or password fails here, before anything is
 * enqueued). Every job carries the sha256 of the data files this search reads, so a worker whose
 * data differs refuses its trials; notes (reattaching, no worker yet, a refusal) go to the output.
 */
async function queueExecutor(queue: SearchQueueOptions, base: TrainConfigInput, stage: string, settings: CommonSettings, context: CommandContext): Promise<QueueExecutor> {
  const sink = progressSink(context, settings);
  const executor = new QueueExecutor({
    url: queue.url, queueName: queue.queueName, dataChecksums: dataChecksumsFor(base, settings.data.dir),
    onNote: (message) => {
      if (!settings.quiet) sink.line(`search ${stage}: note: ${message}`);
    },
  });
  try {
    const status = await executor.connect();
    if (!settings.quiet)
      sink.line(`search ${stage}: queue ${status.queueName} at ${status.url} (Redis ${status.redisVersion}), ${status.workers} worker${status.workers === 1 ? '' : 's'} connected`);
    return executor;
  } catch (error) {
    await executor.close();
    throw error;
  }
}

/** The stage's preset; validation is 1,000 images, or a fifth of a smaller data set. */
export function stageBaseConfig(stage: 'coarse' | 'fine', settings: CommonSettings, epochs: number | undefined): TrainConfigInput {
  const preset = PRESETS[stage === 'coarse' ? 'search-coarse' : 'search-fine'].config;
  const validationCount = Math.min(1000, Math.floor(countTrainingImages(settings.data.dir) / 5));
  return mergeConfig(preset, { seed: settings.seed, data: { validationCount }, ...(epochs === undefined ? {} : { epochs }) });
}

/** One stage, with a bar over all trials (plain lines when not a terminal). */
export async function runSearchStage(dir: string, options: SearchStageOptions, settings: CommonSettings, context: CommandContext): Promise<SearchOutcome> {
  const baseConfig = stageBaseConfig(options.stage, settings, options.epochs);
  // The queue is connected before the folder exists: a wrong URL or password leaves nothing behind.
  const executor =
    options.executor ??
    (options.queue ? await queueExecutor(options.queue, baseConfig, options.stage, settings, context)
      : options.workers > 1 ? new LocalProcessExecutor({ workers: options.workers, dataDir: settings.data.dir }) : new InProcessExecutor({ dataDir: settings.data.dir }));
  mkdirSync(dir, { recursive: true });
  const sink = progressSink(context, settings);
  let bar: ReturnType<typeof countProgress> | null = null;
  try {
    return await runSearch(
      { stage: options.stage, baseConfig, ranges: options.ranges, trials: options.trials, seed: settings.seed },
      {
        executor, resultsPath: join(dir, SEARCH_RESULTS), weightsDir: join(dir, 'weights'), signal: context.signal,
        onEvent: (event) => {
          if (event.kind === 'search-start') {
            if (!settings.quiet && event.done > 0) sink.line(`search ${options.stage}: resuming, ${event.done} of ${event.total} trials already done`);
            bar = countProgress(sink, `search ${options.stage}`, event.total, 'trials');
            bar.update(event.done, `(${event.concurrency} × ${event.executor})`);
          } else if (event.kind === 'trial-end') {
            const s = event.record.summary;
            bar?.update(event.done, `last: η ${event.record.config.optimizer.learningRate.toPrecision(3)} λ ${event.record.config.optimizer.lambda.toPrecision(3)} → ${event.record.status === 'completed' ? `val ${percent(s?.validation?.accuracy)}` : event.record.status}`);
          } else if (event.kind === 'note' && !settings.quiet) sink.line(`search ${options.stage}: note: ${event.message}`);
        },
      },
    );
  } finally {
    (bar as ReturnType<typeof countProgress> | null)?.stop();
    if (!options.executor) await executor.close();
  }
}

export const SEARCH_COLUMNS = ['#', 'η', 'λ', 'train acc', 'val acc', 'epochs', 'status'];

export function searchTableRows(outcome: SearchOutcome, limit = 10): (string | number)[][] {
  return outcome.rows.slice(0, limit).map((r) => [r.index, r.learningRate.toPrecision(4), r.lambda.toPrecision(4), percent(r.trainAccuracy), percent(r.validationAccuracy), r.epochs, r.status]);
}

export async function searchFigure(dir: string, outcome: SearchOutcome, stage: string): Promise<SectionFigure> {
  return figureFile(join(dir, 'plots'), `search-${stage}-scatter`, `${stage} search: validation accuracy over η and λ (log scales; crosses: diverged or failed)`, searchScatterFigure(
    outcome.rows.map((r) => ({ learningRate: r.learningRate, lambda: r.lambda, validationAccuracy: r.validationAccuracy, status: r.status })),
    { title: `${stage[0].toUpperCase()}${stage.slice(1)} search: validation accuracy` },
  ));
}

function stageSection(id: string, title: string, dir: string, outcome: SearchOutcome, ranges: SearchRanges, figure: SectionFigure, note: string, trainImages: string): SectionResult {
  const best = outcome.best ? outcome.rows[0] : null;
  return {
    id, title, dir,
    paragraphs: [
      `${outcome.total} trials, η log-uniform in [${ranges.learningRate.min.toPrecision(3)}, ${ranges.learningRate.max.toPrecision(3)}], λ log-uniform in [${ranges.lambda.min.toPrecision(3)}, ${ranges.lambda.max.toPrecision(3)}]; ${note}. Training images: ${trainImages}.`,
      ...outcome.notes,
    ],
    tables: [{ caption: 'Best trials', columns: SEARCH_COLUMNS, rows: searchTableRows(outcome) }],
    figures: [figure],
    comparisons: best ? [{ section: id, measure: `${title}: best validation accuracy (η ${best.learningRate.toPrecision(4)}, λ ${best.lambda.toPrecision(4)})`, ours: percent(best.validationAccuracy), report: id === 'search-fine' ? REPORTED.searchBestValidation.text : '—', note: trainImages }] : [],
    runs: [],
    status: outcome.aborted ? 'aborted' : 'completed',
  };
}

/** Coarse, then fine around the best coarse trials: two sections. */
export async function searchSections(options: SectionOptions, { trials, workers }: { trials: { coarse: number; fine: number }; workers?: number }): Promise<SectionResult[]> {
  const { settings, context } = options;
  const pool = countTrainingImages(settings.data.dir);
  const available = Math.max(0, pool - 1000);
  const usedWorkers = workers ?? 2;
  const coarseRanges: SearchRanges = { learningRate: { min: SEARCH_DEFAULTS.coarse.learningRate[0], max: SEARCH_DEFAULTS.coarse.learningRate[1] }, lambda: { min: SEARCH_DEFAULTS.coarse.lambda[0], max: SEARCH_DEFAULTS.coarse.lambda[1] } };
  const coarseDir = join(options.dir, 'coarse');
  const coarse = await runSearchStage(coarseDir, { stage: 'coarse', trials: trials.coarse, ranges: coarseRanges, workers: usedWorkers, epochs: options.epochs }, settings, context);
  const coarseSection = stageSection('search-coarse', 'Coarse random search', coarseDir, coarse, coarseRanges, await searchFigure(coarseDir, coarse, 'coarse'), `${options.epochs ?? 10} epochs each, 1,000 validation images`, `${Math.min(5000, available).toLocaleString('en-US')} (the report: 5,000)${available < 5000 ? `: ${dataNote(settings, available)}` : ''}`);
  if (coarse.aborted || !coarse.best) return [coarseSection];
  const fineRangesFound = fineRanges(readSearchResults(join(coarseDir, SEARCH_RESULTS)).records.filter((r) => r.searchId === coarse.searchId));
  const fineDir = join(options.dir, 'fine');
  const fine = await runSearchStage(fineDir, { stage: 'fine', trials: trials.fine, ranges: fineRangesFound, workers: usedWorkers, epochs: options.epochs }, settings, context);
  const fineSection = stageSection('search-fine', 'Fine random search', fineDir, fine, fineRangesFound, await searchFigure(fineDir, fine, 'fine'), `${options.epochs ?? 15} epochs each, ranges spanning the best 3 coarse trials ± 0.25 decades`, `${Math.min(10000, available).toLocaleString('en-US')} (the report: 10,000)${available < 10000 ? `: ${dataNote(settings, available)}` : ''}`);
  return [coarseSection, fineSection];
}

export function hasSearchResults(dir: string): boolean {
  return existsSync(join(dir, SEARCH_RESULTS));
}
