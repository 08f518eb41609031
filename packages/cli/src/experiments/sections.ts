import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { disposeModel, modelFromWeights } from '@bnmlp/core';
import { evaluateDetailed, resolveRunData, type DetailedMetrics, type TrainConfigInput } from '@bnmlp/trainer';
import type { CommandContext } from '../commands/command.js';
import { confusionFigure, curvesFigure, gridFigure, overlayFigure, renderMarkdownTable, writeFigure } from '../report/index.js';
import { claimFolder, countTrainingImages, reportDataSpec, shownPath, trainRun, type CommonSettings, type TrainedRun } from './common.js';
import { LR_SWEEP_RATES, mergeConfig, OVERFIT_DEPTHS, PRESETS } from './presets.js';
import { percent, writeRunOutputs } from './run-outputs.js';
import { REPORTED, type ReportedFigure } from './reported.js';

/*
The report's experiments as sections: each trains its runs (one run folder each, under the
section's folder), draws its figures, and returns tables and figures for the terminal, the
section's summary.md and the combined report (`bnmlp reproduce`). One comparison row per figure
the report states: ours beside the report's, with how our data differs.
*/

export interface SectionFigure {
  readonly name: string;
  readonly caption: string;
  readonly spec: object;
  readonly svg: string;
  readonly pngPath: string;
}

export interface SectionTable {
  readonly caption?: string;
  readonly columns: string[];
  readonly rows: (string | number | null)[][];
}

/** Our figure beside the report's (null where the report gives none we have). */
export interface ComparisonRow {
  readonly section: string;
  readonly measure: string;
  readonly ours: string;
  readonly report: string;
  readonly note: string;
}

export interface SectionResult {
  readonly id: string;
  readonly title: string;
  readonly dir: string;
  readonly paragraphs: string[];
  readonly tables: SectionTable[];
  readonly figures: SectionFigure[];
  readonly comparisons: ComparisonRow[];
  readonly runs: TrainedRun[];
  /** 'aborted' when Ctrl-C stopped a run (the rest is not run). */
  readonly status: 'completed' | 'aborted' | 'failed';
}

export interface SectionOptions {
  readonly settings: CommonSettings;
  readonly context: CommandContext;
  /** The section's folder (claimed by the caller). */
  readonly dir: string;
  /** Every run's epochs, replacing the report's (quick looks, tests). */
  readonly epochs?: number;
}

export async function figureFile(dir: string, name: string, caption: string, spec: object): Promise<SectionFigure> {
  mkdirSync(dir, { recursive: true });
  const paths = await writeFigure(dir, name, spec);
  return { name, caption, spec, svg: readFileSync(paths.svg, 'utf8'), pngPath: paths.png };
}

function scaled(config: TrainConfigInput, epochs: number | undefined): TrainConfigInput {
  return epochs === undefined ? config : { ...config, epochs };
}

/** How our data differs from the report's full CIFAR-10 (45,000 training images). */
export function dataNote(settings: CommonSettings, trainImages: number): string {
  const kind = settings.data.kind === 'fixture' ? 'synthetic fixture images' : 'CIFAR-10 images';
  return trainImages >= 45_000 ? `full CIFAR-10 (${trainImages.toLocaleString('en-US')} training images)` : `${trainImages.toLocaleString('en-US')} training ${kind} instead of 45,000`;
}

function reported(figure: ReportedFigure | undefined): string {
  return figure?.value === null || figure === undefined ? '—' : figure.text;
}

async function trainAll(
  specs: ReadonlyArray<{ label: string; folder: string; config: TrainConfigInput }>, options: SectionOptions,
): Promise<{ runs: TrainedRun[]; aborted: boolean }> {
  const runs: TrainedRun[] = [];
  for (const spec of specs) {
    if (options.context.signal?.aborted) return { runs, aborted: true };
    const run = await trainRun(mergeConfig(spec.config, { seed: options.settings.seed }), join(options.dir, spec.folder), spec.label, options.settings, options.context);
    await writeRunOutputs(run, spec.label);
    runs.push(run);
    if (run.summary.status === 'aborted') return { runs, aborted: true };
  }
  return { runs, aborted: false };
}

function finalRow(run: TrainedRun): (string | number | null)[] {
  const s = run.summary;
  return [run.label, s.status, s.epochs, percent(s.train?.accuracy), percent(s.validation?.accuracy), percent(s.test?.accuracy), s.train ? s.train.cost.toFixed(3) : '—'];
}

const RUN_COLUMNS = ['run', 'status', 'epochs', 'train acc', 'val acc', 'test acc', 'train cost'];

/** The sanity check: 2/3/4-layer nets with and without BN overfit 100 training images. */
export async function overfitSection(options: SectionOptions): Promise<SectionResult> {
  const preset = PRESETS.overfit.config;
  const specs = OVERFIT_DEPTHS.flatMap(({ layers, hiddenDims }) =>
    [true, false].map((bn) => ({
      label: `${layers}-layer ${bn ? 'BN' : 'no BN'}`,
      folder: `${layers}-layer-${bn ? 'bn' : 'no-bn'}`,
      config: scaled(mergeConfig(preset, { network: { hiddenDims, batchNorm: bn } }), options.epochs),
    })),
  );
  const { runs, aborted } = await trainAll(specs, options);
  const figures: SectionFigure[] = [];
  if (runs.length > 0)
    figures.push(
      await figureFile(join(options.dir, 'plots'), 'overfit-train-cost', 'Training cost per epoch on 100 images: every network drives it toward 0', overlayFigure(runs.map((r) => ({ label: r.label, history: r.history })), { metric: 'cost', split: 'train', title: 'Overfitting 100 training images: cost' })),
      await figureFile(join(options.dir, 'plots'), 'overfit-train-accuracy', 'Training accuracy per epoch on 100 images', overlayFigure(runs.map((r) => ({ label: r.label, history: r.history })), { metric: 'accuracy', split: 'train', title: 'Overfitting 100 training images: accuracy' })),
    );
  const rows = runs.map((r) => [r.label, r.summary.status, r.summary.epochs, percent(r.summary.train?.accuracy), r.summary.train ? r.summary.train.cost.toFixed(4) : '—']);
  const comparisons = runs.map((r) => ({ section: 'overfit', measure: `${r.label}: final training accuracy`, ours: percent(r.summary.train?.accuracy), report: reported(REPORTED.overfit), note: '100 training images, as the report' }));
  return {
    id: 'overfit', title: 'Sanity check: overfitting 100 images', dir: options.dir,
    paragraphs: [
      `Each network trains on the first 100 training images for ${specs[0].config.epochs} epochs (ρ 0.8, λ 0, batch 100, η ${preset.optimizer?.learningRate}). A correct implementation reaches (near) 100% training accuracy; one that does not has a bug in its gradients or update.`,
    ],
    tables: [{ caption: 'Final training accuracy per network', columns: ['run', 'status', 'epochs', 'train acc', 'train cost'], rows }],
    figures, comparisons, runs, status: aborted ? 'aborted' : 'completed',
  };
}

/** The 3-layer [50, 30] net with and without BN, overlaid. */
export async function compareBnSection(options: SectionOptions): Promise<SectionResult> {
  const pool = countTrainingImages(options.settings.data.dir);
  const base = mergeConfig(PRESETS['compare-bn'].config, { data: reportDataSpec(pool) });
  const specs = [true, false].map((bn) => ({ label: bn ? 'with BN' : 'without BN', folder: bn ? 'bn' : 'no-bn', config: scaled(mergeConfig(base, { network: { batchNorm: bn } }), options.epochs) }));
  const { runs, aborted } = await trainAll(specs, options);
  const figures: SectionFigure[] = [];
  const series = runs.map((r) => ({ label: r.label, history: r.history }));
  if (runs.length > 0)
    for (const metric of ['cost', 'loss', 'accuracy'] as const)
      figures.push(await figureFile(join(options.dir, 'plots'), `compare-bn-${metric}`, `${metric[0].toUpperCase()}${metric.slice(1)} per epoch, training (solid) and validation (dashed), with and without BN`, overlayFigure(series, { metric, split: 'both', title: `3-layer [50, 30]: ${metric}, BN vs no BN` })));
  const trainImages = runs[0]?.config.data.trainCount ?? Math.max(0, pool - (base.data?.validationCount ?? 0));
  const comparisons = runs.map((r) => ({
    section: 'compare-bn', measure: `3-layer ${r.label}: test accuracy`, ours: percent(r.summary.test?.accuracy),
    report: reported(r.label === 'with BN' ? REPORTED.compareBnWith : REPORTED.compareBnWithout), note: dataNote(options.settings, trainImages),
  }));
  return {
    id: 'compare-bn', title: 'Batch normalization vs none (3 layers)', dir: options.dir,
    paragraphs: [`The report's comparison: [50, 30] hidden units, η 0.01 decayed by 0.99 per epoch, ρ 0.8, λ 0, ${specs[0].config.epochs} epochs, batch 100. Data: ${dataNote(options.settings, trainImages)}.`],
    tables: [{ caption: 'Final figures', columns: RUN_COLUMNS, rows: runs.map(finalRow) }],
    figures, comparisons, runs, status: aborted ? 'aborted' : 'completed',
  };
}

/** The 2-layer [50] net at three learning rates, with and without BN. */
export async function lrSweepSection(options: SectionOptions): Promise<SectionResult> {
  const pool = countTrainingImages(options.settings.data.dir);
  const base = mergeConfig(PRESETS['lr-sweep'].config, { data: reportDataSpec(pool) });
  const specs = [true, false].flatMap((bn) =>
    LR_SWEEP_RATES.map((eta) => ({ label: `${bn ? 'BN' : 'no BN'}, η ${eta}`, folder: `${bn ? 'bn' : 'no-bn'}-eta-${eta}`, config: scaled(mergeConfig(base, { network: { batchNorm: bn }, optimizer: { learningRate: eta } }), options.epochs) })),
  );
  const { runs, aborted } = await trainAll(specs, options);
  const figures: SectionFigure[] = [];
  if (runs.length > 0) {
    const cells = runs.map((r) => ({ row: r.config.network.batchNorm ? 'with BN' : 'without BN', column: `η = ${r.config.optimizer.learningRate}`, history: r.history }));
    figures.push(
      await figureFile(join(options.dir, 'plots'), 'lr-sweep-loss', 'Loss per epoch for each learning rate, with and without BN (training solid, validation dashed)', gridFigure(cells, { metric: 'loss', title: '2-layer [50]: loss per learning rate' })),
      await figureFile(join(options.dir, 'plots'), 'lr-sweep-accuracy', 'Accuracy per epoch for each learning rate, with and without BN', gridFigure(cells, { metric: 'accuracy', title: '2-layer [50]: accuracy per learning rate' })),
    );
  }
  const trainImages = runs[0]?.history.length ? Math.max(0, pool - (base.data?.validationCount ?? 0)) : pool;
  const comparisons = runs.map((r) => ({ section: 'lr-sweep', measure: `${r.label}: test accuracy`, ours: r.summary.status === 'diverged' ? 'diverged' : percent(r.summary.test?.accuracy), report: reported(REPORTED.lrSweep[r.label]), note: dataNote(options.settings, trainImages) }));
  return {
    id: 'lr-sweep', title: 'Learning-rate sensitivity with and without BN (2 layers)', dir: options.dir,
    paragraphs: [`The report's sweep: [50] hidden units, η ∈ {${LR_SWEEP_RATES.join(', ')}}, λ 1e-4, ρ 0.8, ${specs[0].config.epochs} epochs. BN should keep the large η trainable where the plain network struggles.`],
    tables: [{ caption: 'Final figures per learning rate', columns: RUN_COLUMNS, rows: runs.map(finalRow) }],
    figures, comparisons, runs, status: aborted ? 'aborted' : 'completed',
  };
}

/** The report's best recipe (--preset report-best): 3-layer [50, 30] BN, 20 epochs. */
export async function bestSection(options: SectionOptions): Promise<SectionResult> {
  const pool = countTrainingImages(options.settings.data.dir);
  const config = scaled(mergeConfig(PRESETS['report-best'].config, { data: reportDataSpec(pool) }), options.epochs);
  const { runs, aborted } = await trainAll([{ label: 'report-best', folder: 'report-best', config }], options);
  const figures: SectionFigure[] = [];
  const run = runs[0];
  const tables: SectionTable[] = [{ caption: 'Final figures', columns: RUN_COLUMNS, rows: runs.map(finalRow) }];
  if (run) {
    for (const metric of ['cost', 'accuracy'] as const)
      figures.push(await figureFile(join(options.dir, 'plots'), `best-${metric}`, `${metric[0].toUpperCase()}${metric.slice(1)} per epoch of the best recipe`, curvesFigure(run.history, { metric, title: `Best recipe: ${metric} per epoch` })));
    const test = run.weights ? testConfusion(run) : null;
    if (test) {
      figures.push(await figureFile(join(options.dir, 'plots'), 'best-confusion', 'Confusion matrix on the test images (rows: true class, columns: predicted)', confusionFigure(test.confusion.map((r) => [...r]), [...test.classNames], { title: 'Best recipe: test confusion matrix' })));
      tables.push({ caption: 'Test accuracy per class', columns: ['class', 'accuracy'], rows: test.classNames.map((name, c) => [name, percent(test.perClassAccuracy[c])]) });
    }
  }
  const trainImages = Math.max(0, pool - (config.data?.validationCount ?? 0));
  return {
    id: 'best', title: "The report's best network", dir: options.dir,
    paragraphs: [`${PRESETS['report-best'].description}. Data: ${dataNote(options.settings, trainImages)}.`],
    tables,
    figures,
    comparisons: run ? [
      { section: 'best', measure: 'best network: test accuracy', ours: percent(run.summary.test?.accuracy), report: reported(REPORTED.bestTest), note: dataNote(options.settings, trainImages) },
      { section: 'best', measure: 'best network: validation accuracy', ours: percent(run.summary.validation?.accuracy), report: reported(REPORTED.bestValidation), note: dataNote(options.settings, trainImages) },
    ] : [],
    runs, status: aborted ? 'aborted' : 'completed',
  };
}

/** The run's weights evaluated on its test split, rebuilt as the run built it. */
export function testConfusion(run: TrainedRun): (DetailedMetrics & { classNames: readonly string[] }) | null {
  const { data } = resolveRunData(run.config, run.config.data.dir ?? undefined);
  if (!data.test) return null;
  const model = modelFromWeights(run.weights!);
  try {
    return { ...evaluateDetailed(model, data.test, run.config.optimizer.lambda, run.config.evalChunkSize), classNames: data.classNames };
  } finally {
    disposeModel(model);
  }
}

/** The section's own summary.md (tables and figure links), for a command run alone. */
export function writeSectionSummary(section: SectionResult, context: CommandContext): string {
  const lines = [`# ${section.title}`, '', ...section.paragraphs.flatMap((p) => [p, ''])];
  for (const table of section.tables) lines.push(...(table.caption ? [`**${table.caption}**`, ''] : []), renderMarkdownTable(table.columns, table.rows), '');
  if (section.comparisons.length > 0)
    lines.push('**Ours beside the report**', '', renderMarkdownTable(['measure', 'ours', 'report', 'our data'], section.comparisons.map((c) => [c.measure, c.ours, c.report, c.note])), '');
  for (const f of section.figures) lines.push(`![${f.caption}](plots/${f.name}.png)`, '');
  lines.push(`Runs: ${section.runs.map((r) => shownPath(r.dir, context)).join(', ')}`, '');
  const path = join(section.dir, 'summary.md');
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

export { claimFolder };
