import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import { DEFAULT_QUEUE_NAME, fineRanges, maskRedisUrl, parseRedisUrl, readSearchResults, REDIS_URL_ENV, TrainerArgumentError, type SearchRanges } from '@bnmlp/trainer';
import { COMMON_FLAGS, parseCommon, parseInteger, progressSink, runFolder, shownPath, startBackend } from '../experiments/common.js';
import { SEARCH_DEFAULTS } from '../experiments/presets.js';
import { percent } from '../experiments/run-outputs.js';
import { hasSearchResults, runSearchStage, SEARCH_COLUMNS, SEARCH_RESULTS, searchFigure, searchTableRows, type SearchQueueOptions } from '../experiments/search-section.js';
import { writeSectionSummary } from '../experiments/sections.js';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { formatTable } from '../table.js';
import type { Command } from './command.js';

/*
`bnmlp search coarse|fine`: the report's random searches. Trials run in parallel on worker
processes; results.jsonl grows by one line per finished trial, and the same command with the same
--name resumes (finished trials are not run again).
*/

const op = 'bnmlp search';

export const SEARCH_FLAGS: readonly FlagSpec[] = [
  { flag: 'trials', value: '<n>', help: 'trials to draw', default: `${SEARCH_DEFAULTS.coarse.trials} (coarse), ${SEARCH_DEFAULTS.fine.trials} (fine)` },
  { flag: 'eta', value: '<min,max>', help: 'η range (log-uniform)', default: `${SEARCH_DEFAULTS.coarse.learningRate.join(',')} (coarse); fine: from --from` },
  { flag: 'lambda', value: '<min,max>', help: 'λ range (log-uniform)', default: `${SEARCH_DEFAULTS.coarse.lambda.join(',')} (coarse); fine: from --from` },
  { flag: 'from', value: '<dir>', help: 'fine: a coarse search folder; the fine ranges span its best 3 trials ± 0.25 decades' },
  { flag: 'workers', value: '<n>', help: 'trials at once, each in its own process (1: in this process)', default: 'one per core' },
  { flag: 'queue', value: '<url>', help: `run the trials on \`bnmlp worker\` processes through Redis: redis://[:password@]host:port[/db], or 'env' for $${REDIS_URL_ENV}` },
  { flag: 'queue-name', value: '<name>', help: 'the BullMQ queue, with --queue (the workers must serve the same)', default: DEFAULT_QUEUE_NAME },
  { flag: 'epochs', value: '<n>', help: "every trial's epochs", default: '10 (coarse), 15 (fine)' },
  { flag: 'name', value: '<name>', help: 'folder under --runs-dir; an existing one with results is resumed', default: 'search-<stage>-<UTC timestamp>' },
  ...COMMON_FLAGS,
];

function parseRange(flag: string, text: string | boolean | undefined): { min: number; max: number } | null {
  if (text === undefined) return null;
  const parts = String(text).split(',').map((p) => (p.trim() === '' ? Number.NaN : Number(p)));
  if (parts.length !== 2 || !parts.every((v) => Number.isFinite(v) && v > 0) || parts[0] > parts[1])
    throw new CliArgumentError(op, `--${flag}`, 'two positive numbers min,max with min <= max', quote(String(text)));
  return { min: parts[0], max: parts[1] };
}

/** --queue: a URL, or 'env' for $BNMLP_REDIS_URL (which keeps the password out of the process list). */
function parseQueue(values: Readonly<Record<string, string | boolean | undefined>>, env: Readonly<Record<string, string | undefined>>): (SearchQueueOptions & { queueName: string }) | null {
  const queueName = typeof values['queue-name'] === 'string' ? values['queue-name'] : DEFAULT_QUEUE_NAME;
  if (values.queue === undefined) {
    if (values['queue-name'] !== undefined) throw new CliArgumentError(op, '--queue-name', 'given with --queue', 'no --queue');
    return null;
  }
  if (values.workers !== undefined) throw new CliArgumentError(op, '--workers', 'left out with --queue (the workers are `bnmlp worker` processes; each has --concurrency)', quote(String(values.workers)));
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(queueName)) throw new CliArgumentError(op, '--queue-name', 'a name of letters, digits, ., _ and -', quote(queueName));
  const fromEnv = values.queue === 'env';
  const url = fromEnv ? env[REDIS_URL_ENV] : String(values.queue);
  if (!url) throw new CliArgumentError(op, '--queue', `a Redis URL, or 'env' with $${REDIS_URL_ENV} set`, `'env' (and $${REDIS_URL_ENV} is not set)`);
  try {
    parseRedisUrl(url, fromEnv ? `$${REDIS_URL_ENV}` : '--queue');
  } catch (error) {
    if (error instanceof TrainerArgumentError) throw new CliArgumentError(op, fromEnv ? `$${REDIS_URL_ENV}` : '--queue', error.expected, error.actual);
    throw error;
  }
  return { url, queueName };
}

function searchHelp(): string {
  return [
    'Usage: bnmlp search coarse [options]',
    '       bnmlp search fine --from <coarse-dir> [options]',
    '',
    "The report's random searches over η and λ, both log-uniform. coarse: 5,000 training and 1,000",
    'validation images, 10 epochs per trial; fine: 10,000 training images, 15 epochs, in ranges around',
    "the best coarse trials (or as much as the data holds: the output says so). Every trial is a full",
    'training run of the 3-layer [50, 30] BN network; trials run in parallel on worker processes.',
    'Writes results.jsonl (a line per trial, as each ends), weights/, plots/ and summary.md into the',
    'folder and prints the best trials. Run the same command with the same --name to resume.',
    '',
    'With --queue, the trials go to a queue in Redis and run on `bnmlp worker --queue …` processes on',
    'any machines (each checks its data against the sha256 of this search\'s files); this command',
    'waits, then writes the same files. Stopped and run again, it collects what finished meanwhile.',
    '',
    'Options:',
    formatFlags(SEARCH_FLAGS),
    '',
    'Exit status: 0 done, 1 no trial completed, 2 usage error, 130 stopped by Ctrl-C (resumable).',
    '',
  ].join('\n');
}

export const searchCommand: Command = {
  name: 'search',
  summary: 'random search over η and λ (coarse, then fine), in parallel; resumable',
  help: searchHelp,
  async run(args, context) {
    const { values, positionals } = parseFlags(op, args, SEARCH_FLAGS, { name: 'stage', min: 0, max: 1 });
    if (values.help) {
      context.stdout(searchHelp());
      return 0;
    }
    const stage = positionals[0];
    if (stage !== 'coarse' && stage !== 'fine') throw new CliArgumentError(op, 'stage', "'coarse' or 'fine'", stage === undefined ? 'nothing' : quote(stage));
    const settings = parseCommon(op, values, context);
    const cwd = context.cwd ?? process.cwd();
    const trials = parseInteger(op, 'trials', values.trials, stage === 'coarse' ? SEARCH_DEFAULTS.coarse.trials : SEARCH_DEFAULTS.fine.trials, 1);
    const workers = parseInteger(op, 'workers', values.workers, availableParallelism(), 1);
    const epochs = values.epochs === undefined ? undefined : parseInteger(op, 'epochs', values.epochs, 1, 1);
    const queue = parseQueue(values, context.env ?? process.env);
    let ranges: SearchRanges;
    const eta = parseRange('eta', values.eta);
    const lambda = parseRange('lambda', values.lambda);
    if (stage === 'fine' && (!eta || !lambda)) {
      if (typeof values.from !== 'string') throw new CliArgumentError(op, '--from', 'given for a fine search (a coarse search folder), or both --eta and --lambda', 'nothing');
      const results = readSearchResults(join(resolve(cwd, values.from), SEARCH_RESULTS));
      if (results.records.length === 0) throw new CliArgumentError(op, '--from', `a search folder with ${SEARCH_RESULTS}`, quote(values.from));
      let derived: SearchRanges;
      try {
        derived = fineRanges(results.records);
      } catch (error) {
        throw new CliArgumentError(op, '--from', 'a search with at least one completed trial', `${quote(values.from)} (${(error as Error).message})`);
      }
      ranges = { learningRate: eta ?? derived.learningRate, lambda: lambda ?? derived.lambda };
    } else {
      ranges = {
        learningRate: eta ?? { min: SEARCH_DEFAULTS.coarse.learningRate[0], max: SEARCH_DEFAULTS.coarse.learningRate[1] },
        lambda: lambda ?? { min: SEARCH_DEFAULTS.coarse.lambda[0], max: SEARCH_DEFAULTS.coarse.lambda[1] },
      };
    }
    const dir = runFolder(settings, `search-${stage}`, typeof values.name === 'string' ? values.name : null);
    // An existing search folder is resumed; --force starts it over.
    if (settings.force && existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    else if (existsSync(dir) && !hasSearchResults(dir) && (values.name !== undefined))
      throw new CliArgumentError(op, '--name', 'a new folder, or one holding an earlier search to resume', quote(shownPath(dir, context)));
    // On a queue, the trials run on the workers' backends (`bnmlp worker --backend`), not here.
    const backend = queue ? null : await startBackend(settings);
    const where = queue ? `on queue ${queue.queueName} (bnmlp worker processes)` : `on ${workers} worker${workers === 1 ? '' : 's'}`;
    if (!settings.quiet)
      progressSink(context, settings).line(`${op} ${stage}: ${trials} trials ${where}, η in [${ranges.learningRate.min.toPrecision(3)}, ${ranges.learningRate.max.toPrecision(3)}], λ in [${ranges.lambda.min.toPrecision(3)}, ${ranges.lambda.max.toPrecision(3)}]; data: ${settings.data.description}${backend ? `; backend ${backend.name}` : ''}`);
    const outcome = await runSearchStage(dir, { stage, trials, ranges, workers, epochs, ...(queue ? { queue } : {}) }, settings, context);
    const figure = await searchFigure(dir, outcome, stage);
    writeSectionSummary({
      id: `search-${stage}`, title: `${stage[0].toUpperCase()}${stage.slice(1)} random search`, dir,
      paragraphs: [`${outcome.total} trials (${outcome.ran} run now), η in [${ranges.learningRate.min}, ${ranges.learningRate.max}], λ in [${ranges.lambda.min}, ${ranges.lambda.max}]; data: ${settings.data.description}.`, ...outcome.notes],
      tables: [{ caption: 'Best trials', columns: SEARCH_COLUMNS, rows: searchTableRows(outcome, outcome.rows.length) }],
      figures: [figure], comparisons: [], runs: [], status: outcome.aborted ? 'aborted' : 'completed',
    }, context);
    if (settings.json) context.stdout(`${JSON.stringify({ dir, searchId: outcome.searchId, total: outcome.total, ran: outcome.ran, aborted: outcome.aborted, best: outcome.best, rows: outcome.rows, notes: outcome.notes }, null, 2)}\n`);
    else {
      // What the trials said about the data (e.g. fewer images than asked for), once each.
      const trialNotes = new Set(outcome.results.flatMap((r) => r.summary?.notes ?? []));
      for (const note of [...outcome.notes, ...trialNotes]) context.stdout(`note: ${note}\n`);
      context.stdout(`${formatTable(SEARCH_COLUMNS, searchTableRows(outcome).map((r) => r.map(String)), ['right', 'right', 'right', 'right', 'right', 'right', 'left'])}\n`);
      const best = outcome.best ? outcome.rows[0] : null;
      if (best) context.stdout(`best: η ${best.learningRate}, λ ${best.lambda}: validation ${percent(best.validationAccuracy)}\n`);
      else context.stdout('no trial completed: see the status and error of each in the results file\n');
      context.stdout(`${outcome.results.length} of ${outcome.total} trials recorded in ${shownPath(join(dir, SEARCH_RESULTS), context)}\n`);
    }
    if (outcome.aborted) {
      // Never a password in the output: the URL is masked (the real command is the one you typed).
      const again = args.filter((a) => a !== '--force').map(maskRedisUrl).join(' ');
      const onQueue = queue ? 'The trials on the queue keep running on the workers; running the search again collects them. ' : '';
      context.stderr(`stopped; finished trials are recorded. ${onQueue}Resume with:\n  bnmlp search ${again}${values.name === undefined ? ` --name ${shownPath(dir, context).split('/').pop()}` : ''}\n`);
      return 130;
    }
    return outcome.best ? 0 : 1;
  },
};
