import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { COMMON_FLAGS, claimFolder, parseCommon, parseInteger, progressSink, runFolder, shownPath, startBackend, type CommonSettings } from '../experiments/common.js';
import { gradcheckSection } from '../experiments/gradcheck-section.js';
import { searchSections } from '../experiments/search-section.js';
import { bestSection, compareBnSection, figureFile, lrSweepSection, overfitSection, writeSectionSummary, type ComparisonRow, type SectionOptions, type SectionResult } from '../experiments/sections.js';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { barFigure, writeReport, type ReportDocument } from '../report/index.js';
import { formatTable } from '../table.js';
import type { Command, CommandContext } from './command.js';

/*
`bnmlp reproduce` (the README's main job, `npm start`): every section of the model report in the
report's order with its exact hyperparameters, then one report (report.md and a self-contained
report.html) whose tables put our figures beside the report's and say how our data differs.
*/

const op = 'bnmlp reproduce';

export const SECTION_IDS = ['gradcheck', 'overfit', 'compare-bn', 'lr-sweep', 'search', 'best'] as const;
type SectionId = (typeof SECTION_IDS)[number];

export const REPRODUCE_FLAGS: readonly FlagSpec[] = [
  { flag: 'name', value: '<name>', help: 'folder name under --runs-dir', default: 'reproduce-<UTC timestamp>' },
  { flag: 'only', value: '<ids>', help: `run only these sections (comma-separated: ${SECTION_IDS.join(', ')})`, default: 'all' },
  { flag: 'epochs', value: '<n>', help: "every run's epochs instead of the report's (a quick look; the report's figures need the default)" },
  { flag: 'trials', value: '<coarse,fine>', help: 'random-search trials per stage', default: '12,8' },
  { flag: 'workers', value: '<n>', help: 'parallel search trials (processes)', default: 'one per core' },
  ...COMMON_FLAGS,
];

const TITLES: Record<SectionId, string> = {
  gradcheck: 'gradient check', overfit: 'overfit sanity check', 'compare-bn': 'BN vs no BN', 'lr-sweep': 'learning-rate sweep', search: 'random search (coarse, fine)', best: 'best network',
};

function parseOnly(text: string | boolean | undefined): SectionId[] {
  if (text === undefined) return [...SECTION_IDS];
  const ids = String(text).split(',').map((s) => s.trim());
  const bad = ids.find((id) => !SECTION_IDS.includes(id as SectionId));
  if (bad !== undefined || ids.length === 0) throw new CliArgumentError(op, '--only', `a comma-separated list of ${SECTION_IDS.join(', ')}`, quote(String(text)));
  return SECTION_IDS.filter((id) => ids.includes(id));
}

function parseTrials(text: string | boolean | undefined): { coarse: number; fine: number } {
  if (text === undefined) return { coarse: 12, fine: 8 };
  const parts = String(text).split(',').map((p) => (/^\d+$/.test(p.trim()) ? Number(p) : Number.NaN));
  if (parts.length !== 2 || !parts.every((n) => Number.isInteger(n) && n >= 1)) throw new CliArgumentError(op, '--trials', 'two positive integers: coarse,fine', quote(String(text)));
  return { coarse: parts[0], fine: parts[1] };
}

export function summaryTable(rows: readonly ComparisonRow[]): { columns: string[]; rows: string[][] } {
  return { columns: ['section', 'measure', 'ours', 'report', 'our data'], rows: rows.map((r) => [r.section, r.measure, r.ours, r.report, r.note]) };
}

export async function reportDocument(sections: readonly SectionResult[], settings: CommonSettings, dir: string, seconds: number): Promise<ReportDocument> {
  const comparisons = sections.flatMap((s) => s.comparisons);
  const accuracies = comparisons.filter((c) => c.ours.endsWith('%') && /test accuracy/.test(c.measure));
  const figures = accuracies.length > 0
    ? [await figureFile(join(dir, 'plots'), 'summary-test-accuracy', 'Test accuracy of each experiment (ours; the report beside it where we have its figure)', barFigure(accuracies.map((c) => ({ label: c.measure.replace(/: test accuracy$/, ''), value: Number.parseFloat(c.ours) / 100, ...(c.report.endsWith('%') ? { reference: Number.parseFloat(c.report) / 100 } : {}) })), { title: 'Test accuracy per experiment', valueTitle: 'test accuracy' }))]
    : [];
  const table = summaryTable(comparisons);
  return {
    title: 'bnmlp: the model report, reproduced',
    subtitle: `DD2424 Assignment 3, k-layer MLP with batch normalization on CIFAR-10. Data: ${settings.data.description}. Seed ${settings.seed}; ${seconds.toFixed(0)} s in all.`,
    generatedAt: new Date().toISOString(),
    sections: [
      {
        id: 'summary', title: 'Summary: ours beside the report',
        paragraphs: ["Each figure of ours beside the report's where the report states one ('—': the report's figure is not available to this repository). The last column says how our data differs from the report's full CIFAR-10."],
        tables: [{ caption: 'Our figures and the report\'s', columns: table.columns, rows: table.rows }],
        figures: figures.map((f) => ({ name: f.name, caption: f.caption, spec: f.spec, svg: f.svg, pngPath: f.pngPath })),
      },
      ...sections.map((s) => ({
        id: s.id, title: s.title, paragraphs: s.paragraphs, tables: s.tables,
        figures: s.figures.map((f) => ({ name: `${s.id}/plots/${f.name}`, caption: f.caption, spec: f.spec, svg: f.svg, pngPath: f.pngPath })),
      })),
    ],
    notes: [
      `Written by bnmlp reproduce into ${dir}.`,
      ...sections.filter((s) => s.status !== 'completed').map((s) => `Section ${s.id}: ${s.status}.`),
    ],
  };
}

function reproduceHelp(): string {
  return [
    'Usage: bnmlp reproduce [options]',
    '',
    "Runs every section of the model report with its exact hyperparameters, in order: the gradient",
    'check, the overfitting sanity check, BN vs no BN, the learning-rate sweep, the coarse and fine',
    "random searches, and the best network (--preset report-best). Then writes report.md and a",
    'self-contained report.html into the folder and prints the summary table: our figures beside the',
    "report's, and how our data differs. On the shared 5,000-image subset it takes about 2 minutes on 2 cores.",
    '',
    'Options:',
    formatFlags(REPRODUCE_FLAGS),
    '',
    'Exit status: 0 done, 1 a section failed, 2 usage error, 130 stopped by Ctrl-C.',
    '',
  ].join('\n');
}

export const reproduceCommand: Command = {
  name: 'reproduce',
  summary: 'every experiment of the model report, then one Markdown + HTML report',
  help: reproduceHelp,
  async run(args, context: CommandContext) {
    const { values } = parseFlags(op, args, REPRODUCE_FLAGS);
    if (values.help) {
      context.stdout(reproduceHelp());
      return 0;
    }
    const started = performance.now();
    const settings = parseCommon(op, values, context);
    const only = parseOnly(values.only);
    const trials = parseTrials(values.trials);
    const epochs = values.epochs === undefined ? undefined : parseInteger(op, 'epochs', values.epochs, 1, 1);
    const workers = values.workers === undefined ? undefined : parseInteger(op, 'workers', values.workers, 1, 1);
    const dir = runFolder(settings, 'reproduce', typeof values.name === 'string' ? values.name : null);
    claimFolder(op, dir, settings.force);
    const backend = await startBackend(settings);
    const log = progressSink(context, settings);
    if (!settings.quiet) log.line(`${op}: ${only.map((id) => TITLES[id]).join(', ')}; data: ${settings.data.description}; backend ${backend.name}`);

    const sections: SectionResult[] = [];
    for (const id of only) {
      if (context.signal?.aborted) break;
      const sectionDir = join(dir, id);
      mkdirSync(sectionDir, { recursive: true });
      const options: SectionOptions = { settings, context, dir: sectionDir, epochs };
      if (!settings.quiet) log.line(`== ${TITLES[id]} ==`);
      const results =
        id === 'gradcheck' ? [await gradcheckSection(options)]
          : id === 'overfit' ? [await overfitSection(options)]
            : id === 'compare-bn' ? [await compareBnSection(options)]
              : id === 'lr-sweep' ? [await lrSweepSection(options)]
                : id === 'search' ? await searchSections(options, { trials, workers })
                  : [await bestSection(options)];
      for (const section of results) {
        writeSectionSummary(section, context);
        sections.push(section);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const { markdownPath, htmlPath } = writeReport(dir, await reportDocument(sections, settings, dir, seconds));
    const table = summaryTable(sections.flatMap((s) => s.comparisons));
    if (settings.json) context.stdout(`${JSON.stringify({ dir, seconds, report: { markdown: markdownPath, html: htmlPath }, summary: table, sections: sections.map((s) => ({ id: s.id, status: s.status })) }, null, 2)}\n`);
    else
      context.stdout(
        `\n${formatTable(table.columns, table.rows, ['left', 'left', 'right', 'right', 'left'])}\n\nreport: ${shownPath(htmlPath, context)} (and ${shownPath(markdownPath, context)}), ${seconds.toFixed(0)} s\n`,
      );
    if (context.signal?.aborted || sections.some((s) => s.status === 'aborted')) return 130;
    return sections.some((s) => s.status === 'failed') ? 1 : 0;
  },
};
