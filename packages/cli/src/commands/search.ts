import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import { fineRanges, readSearchResults, type SearchRanges } from '@bnmlp/trainer';
import { COMMON_FLAGS, parseCommon, parseInteger, progressSink, runFolder, shownPath, startBackend } from '../experiments/common.js';
import { SEARCH_DEFAULTS } from '../experiments/presets.js';
import { percent } from '../experiments/run-outputs.js';
import { hasSearchResults, runSearchStage, SEARCH_COLUMNS, SEARCH_RESULTS, searchFigure, searchTableRows } from '../experiments/search-section.js';
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
    const backend = await startBackend(settings);
    if (!settings.quiet)
      progressSink(context, settings).line(`${op} ${stage}: ${trials} trials on ${workers} worker${workers === 1 ? '' : 's'}, η in [${ranges.learningRate.min.toPrecision(3)}, ${ranges.learningRate.max.toPrecision(3)}], λ in [${ranges.lambda.min.toPrecision(3)}, ${ranges.lambda.max.toPrecision(3)}]; data: ${settings.data.description}; backend ${backend.name}`);
    const outcome = await runSearchStage(dir, { stage, trials, ranges, workers, epochs }, settings, context);
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
      context.stderr(`stopped; finished trials are recorded. Resume with:\n  bnmlp search ${args.filter((a) => a !== '--force').join(' ')}${values.name === undefined ? ` --name ${shownPath(dir, context).split('/').pop()}` : ''}\n`);
      return 130;
    }
    return outcome.best ? 0 : 1;
  },
};
