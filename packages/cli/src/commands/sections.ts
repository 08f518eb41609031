import { COMMON_FLAGS, claimFolder, parseCommon, parseInteger, progressSink, runFolder, shownPath, startBackend } from '../experiments/common.js';
import { compareBnSection, lrSweepSection, overfitSection, writeSectionSummary, type SectionOptions, type SectionResult } from '../experiments/sections.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { formatTable } from '../table.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp overfit`, `bnmlp compare-bn`, `bnmlp lr-sweep`: one section of the model report each, with
its exact hyperparameters. Each writes runs/<name>/ holding one run folder per network, plots/
and summary.md, and prints the final figures beside the report's.
*/

export const SECTION_FLAGS: readonly FlagSpec[] = [
  { flag: 'name', value: '<name>', help: 'folder name under --runs-dir', default: '<command>-<UTC timestamp>' },
  { flag: 'epochs', value: '<n>', help: "every run's epochs instead of the report's (for a quick look)" },
  ...COMMON_FLAGS,
];

export function formatSection(section: SectionResult, context: CommandContext): string {
  const lines: string[] = [`${section.title}`, ''];
  for (const table of section.tables) lines.push(formatTable(table.columns, table.rows.map((r) => r.map((c) => (c === null ? '—' : String(c)))), table.columns.map((_, i) => (i === 0 ? 'left' : 'right'))), '');
  if (section.comparisons.length > 0)
    lines.push(formatTable(['measure', 'ours', 'report', 'our data'], section.comparisons.map((c) => [c.measure, c.ours, c.report, c.note]), ['left', 'right', 'right', 'left']), '');
  lines.push(`${section.status === 'aborted' ? 'stopped by Ctrl-C; ' : ''}written: ${shownPath(section.dir, context)}/summary.md, ${section.figures.length} figures in ${shownPath(section.dir, context)}/plots`);
  return `${lines.join('\n')}\n`;
}

export function sectionJson(section: SectionResult): object {
  return {
    id: section.id, title: section.title, dir: section.dir, status: section.status, tables: section.tables, comparisons: section.comparisons,
    figures: section.figures.map((f) => ({ name: f.name, caption: f.caption, png: f.pngPath })),
    runs: section.runs.map((r) => ({ label: r.label, dir: r.dir, summary: r.summary })),
  };
}

function sectionCommand(name: string, summary: string, description: readonly string[], run: (options: SectionOptions) => Promise<SectionResult>): Command {
  const op = `bnmlp ${name}`;
  const help = () =>
    [`Usage: bnmlp ${name} [options]`, '', ...description, '', 'Options:', formatFlags(SECTION_FLAGS), '', 'Exit status: 0 done, 1 a run failed, 2 usage error, 130 stopped by Ctrl-C.', ''].join('\n');
  return {
    name, summary, help,
    async run(args, context) {
      const { values } = parseFlags(op, args, SECTION_FLAGS);
      if (values.help) {
        context.stdout(help());
        return 0;
      }
      const settings = parseCommon(op, values, context);
      const epochs = values.epochs === undefined ? undefined : parseInteger(op, 'epochs', values.epochs, 1, 1);
      const dir = runFolder(settings, name, typeof values.name === 'string' ? values.name : null);
      claimFolder(op, dir, settings.force);
      const backend = await startBackend(settings);
      if (!settings.quiet) progressSink(context, settings).line(`${op}: data: ${settings.data.description}; backend ${backend.name}`);
      const section = await run({ settings, context, dir, epochs });
      writeSectionSummary(section, context);
      context.stdout(settings.json ? `${JSON.stringify(sectionJson(section), null, 2)}\n` : formatSection(section, context));
      if (section.status === 'aborted') return 130;
      return section.runs.some((r) => r.summary.status !== 'completed' && !(name === 'lr-sweep' && r.summary.status === 'diverged')) ? 1 : 0;
    },
  };
}

export const overfitCommand = sectionCommand(
  'overfit', 'sanity check: 2/3/4-layer nets with and without BN overfit 100 images (400 epochs)',
  [
    'Trains 2-, 3- and 4-layer networks ([50], [50, 30], [50, 30, 20]), each with and without batch',
    'norm, on the first 100 training images for 400 epochs (ρ 0.8, λ 0, batch 100), as the report',
    'does, and reports the training accuracy each reaches (a correct implementation gets near 100%).',
  ],
  overfitSection,
);

export const compareBnCommand = sectionCommand(
  'compare-bn', 'the 3-layer [50, 30] net with and without BN, curves overlaid',
  [
    "The report's comparison: 3 layers [50, 30], η 0.01 decayed by 0.99 per epoch, ρ 0.8, λ 0, 15",
    'epochs, batch 100, once with batch norm and once without; cost, loss and accuracy curves overlaid.',
  ],
  compareBnSection,
);

export const lrSweepCommand = sectionCommand(
  'lr-sweep', 'the 2-layer [50] net at three learning rates, with and without BN',
  [
    "The report's learning-rate comparison: 2 layers [50], η 0.40573, 0.029202 and 0.003215, with and",
    'without batch norm, λ 1e-4, ρ 0.8, 10 epochs; a grid of loss and accuracy curves. A run that',
    'diverges (likely without BN at the largest η) is shown as such and does not fail the command.',
  ],
  lrSweepSection,
);
