import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { readRunFolder, RUN_FILES, type RunFolder } from '@bnmlp/trainer';
import { claimFolder, folderTimestamp, HELP_FLAG, progressSink, QUIET_FLAG } from '../experiments/common.js';
import { percent } from '../experiments/run-outputs.js';
import { figureFile, type SectionFigure } from '../experiments/sections.js';
import { CliArgumentError, quote } from '../errors.js';
import { formatFlags, parseFlags, type FlagSpec } from '../options.js';
import { curvesFigure, overlayFigure, writeReport } from '../report/index.js';
import type { Command } from './command.js';

/*
`bnmlp report RUN_DIR…`: one Markdown and one self-contained HTML report over run folders (a
`bnmlp train` run, or an experiment folder holding several runs): per run its settings, final
figures and curves; runs of one folder overlaid.
*/

const op = 'bnmlp report';

export const REPORT_FLAGS: readonly FlagSpec[] = [
  { flag: 'out', value: '<dir>', help: 'folder for report.md, report.html and plots/', default: 'runs/report-<UTC timestamp>' },
  { flag: 'title', value: '<text>', help: 'the report title', default: 'bnmlp runs' },
  { flag: 'force', help: 'replace an existing --out folder' },
  QUIET_FLAG,
  HELP_FLAG,
];

/** The run folders in `dir`: itself when it is one, else its sub-folders that are (one level). */
export function runFoldersIn(dir: string): RunFolder[] {
  if (existsSync(join(dir, RUN_FILES.run))) return [readRunFolder(dir)];
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return [];
  return readdirSync(dir)
    .sort()
    .map((name) => join(dir, name))
    .filter((sub) => statSync(sub).isDirectory() && existsSync(join(sub, RUN_FILES.run)))
    .map((sub) => readRunFolder(sub));
}

function describeRun(run: RunFolder): string {
  const c = run.config;
  return `${[c.data.dims, ...c.network.hiddenDims, 10].join('-')}${c.network.batchNorm ? ' with BN' : ' without BN'}, η ${c.optimizer.learningRate}, λ ${c.optimizer.lambda}, ρ ${c.optimizer.momentum}, batch ${c.batchSize}, ${c.epochs} epochs, seed ${c.seed}`;
}

function reportHelp(): string {
  return [
    'Usage: bnmlp report <run-dir>... [options]',
    '',
    'Writes report.md and a self-contained report.html (figures inline as SVG; no network needed)',
    'over the given run folders: for each, its settings, final training/validation/test figures and',
    'its cost and accuracy curves; the runs inside one experiment folder (e.g. runs/compare-bn-…)',
    'are also overlaid.',
    '',
    'Options:',
    formatFlags(REPORT_FLAGS),
    '',
  ].join('\n');
}

export const reportCommand: Command = {
  name: 'report',
  summary: 'one Markdown + self-contained HTML report over run folders',
  help: reportHelp,
  async run(args, context) {
    const { values, positionals } = parseFlags(op, args, REPORT_FLAGS, { name: 'run-dir...', min: 1, max: Number.POSITIVE_INFINITY });
    if (values.help) {
      context.stdout(reportHelp());
      return 0;
    }
    const cwd = context.cwd ?? process.cwd();
    const groups = positionals.map((p) => {
      const runs = runFoldersIn(resolve(cwd, p));
      if (runs.length === 0) throw new CliArgumentError(op, 'run-dir', 'a run folder (with run.json) or a folder of run folders', quote(p));
      return { path: resolve(cwd, p), runs };
    });
    const out = resolve(cwd, typeof values.out === 'string' ? values.out : join('runs', `report-${folderTimestamp()}`));
    claimFolder(op, out, values.force === true);
    const plots = join(out, 'plots');
    const sections = [];
    let index = 0;
    for (const group of groups) {
      const figures: SectionFigure[] = [];
      const prefix = `g${index++}`;
      if (group.runs.length > 1)
        for (const metric of ['cost', 'accuracy'] as const)
          figures.push(await figureFile(plots, `${prefix}-overlay-${metric}`, `${metric} per epoch, every run of ${basename(group.path)} (training solid, validation dashed)`, overlayFigure(group.runs.map((r) => ({ label: basename(r.dir), history: r.history })), { metric, split: 'both', title: `${basename(group.path)}: ${metric}` })));
      else
        for (const metric of ['cost', 'accuracy'] as const)
          figures.push(await figureFile(plots, `${prefix}-${metric}`, `${metric} per epoch`, curvesFigure(group.runs[0].history, { metric, title: `${basename(group.path)}: ${metric}` })));
      sections.push({
        id: `run-${index}`,
        title: basename(group.path),
        paragraphs: group.runs.map((r) => `${basename(r.dir)}: ${describeRun(r)}; ${r.summary ? `${r.summary.status} after ${r.summary.epochs} epochs` : 'not finished'}.`),
        tables: [{
          caption: 'Final figures',
          columns: ['run', 'status', 'epochs', 'train acc', 'val acc', 'test acc'],
          rows: group.runs.map((r) => [basename(r.dir), r.summary?.status ?? 'running', r.history.length, percent(r.summary?.train?.accuracy), percent(r.summary?.validation?.accuracy), percent(r.summary?.test?.accuracy)]),
        }],
        figures: figures.map((f) => ({ name: f.name, caption: f.caption, spec: f.spec, svg: f.svg, pngPath: f.pngPath })),
      });
    }
    const { markdownPath, htmlPath } = writeReport(out, {
      title: typeof values.title === 'string' ? values.title : 'bnmlp runs',
      generatedAt: new Date().toISOString(),
      sections,
      notes: groups.map((g) => `Source: ${g.path}`),
    });
    if (values.quiet !== true) progressSink(context, { quiet: false, json: false }).line(`report: ${htmlPath} (and ${markdownPath})`);
    return 0;
  },
};
