import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EpochRecord, RunResult, SplitMetrics } from '@bnmlp/trainer';
import { curvesFigure, renderMarkdownTable, writeFigure } from '../report/index.js';

/*
What the CLI adds to a trainer run folder: plots/ (the report's per-run figures as SVG, PNG and
the Vega-Lite spec) and summary.md (the run at a glance, for people).
*/

export const RUN_PLOTS = ['cost', 'loss', 'accuracy'] as const;

export function percent(value: number | null | undefined): string {
  return value === null || value === undefined || Number.isNaN(value) ? '—' : `${(100 * value).toFixed(2)}%`;
}

export function metricsRow(label: string, m: SplitMetrics | null): (string | number | null)[] {
  return [label, m ? m.cost.toFixed(4) : '—', m ? m.loss.toFixed(4) : '—', percent(m?.accuracy)];
}

export async function writeRunPlots(dir: string, history: readonly EpochRecord[], title: string): Promise<string[]> {
  if (history.length === 0) return [];
  const plots = join(dir, 'plots');
  mkdirSync(plots, { recursive: true });
  const written: string[] = [];
  for (const metric of RUN_PLOTS) {
    const paths = await writeFigure(plots, metric, curvesFigure(history, { metric, title: `${title}: ${metric} per epoch` }));
    written.push(paths.png);
  }
  return written;
}

export function runSummaryMarkdown(result: RunResult, title: string): string {
  const s = result.summary;
  const c = result.config;
  const schedule = c.optimizer.schedule.kind === 'step-decay' ? `η ${c.optimizer.learningRate}, decay ${c.optimizer.schedule.decay}/epoch` : `cyclical η ${c.optimizer.schedule.etaMin}–${c.optimizer.schedule.etaMax}, n_s ${c.optimizer.schedule.stepSize}, ${c.optimizer.schedule.cycles} cycles`;
  const lines = [
    `# ${title}`,
    '',
    `Status: **${s.status}** after ${s.epochs} epochs (${s.steps} steps) in ${s.seconds.toFixed(1)} s on ${s.backend}.`,
    '',
    `Network: ${[c.data.dims, ...c.network.hiddenDims, 10].join('-')}, ${c.network.batchNorm ? 'batch norm' : 'no batch norm'}; ${schedule}, ρ ${c.optimizer.momentum}, λ ${c.optimizer.lambda}, batch ${c.batchSize}, seed ${c.seed}.`,
    '',
    renderMarkdownTable(['split', 'cost', 'loss', 'accuracy'], [metricsRow('training', s.train), metricsRow('validation', s.validation), metricsRow('test', s.test)]),
    '',
  ];
  if (s.divergence) lines.push(`Diverged: ${s.divergence.message}. The checkpoint holds epoch ${s.divergence.lastGoodEpoch}.`, '');
  for (const note of s.notes) lines.push(`- ${note}`);
  if (result.history.length > 0) lines.push('', ...RUN_PLOTS.map((m) => `![${m}](plots/${m}.png)`), '');
  return `${lines.join('\n')}\n`;
}

export async function writeRunOutputs(result: RunResult, title: string): Promise<void> {
  await writeRunPlots(result.dir, result.history, title);
  writeFileSync(join(result.dir, 'summary.md'), runSummaryMarkdown(result, title));
}
