import type { TopLevelSpec } from 'vega-lite';
import { FIGURE_FONT } from './render.js';

/*
The report's figures as Vega-Lite v6 specs: plain JSON objects with their data inline, so each
renders offline (render.ts) and can be restyled from its `.vl.json`. One look for all: 480 × 300
plots, training solid and validation dashed, the Tableau 10 colours for series, a sequential
scheme for magnitudes, DejaVu Sans.

Values that are not finite (a diverged run's NaN or Infinity) cannot be drawn and are left out
of the data; a subtitle says how many points were left out.
*/

export type FigureSpec = TopLevelSpec;
export type Metric = 'cost' | 'loss' | 'accuracy';
export type Split = 'train' | 'validation';

/** The part of a training history record (@bnmlp/trainer `EpochRecord`) the figures read. */
export interface HistoryPoint {
  /** 1-based. */
  readonly epoch: number;
  readonly train: { readonly cost: number; readonly loss: number; readonly accuracy: number };
  readonly validation: { readonly cost: number; readonly loss: number; readonly accuracy: number } | null;
}

export type History = readonly HistoryPoint[];

export const FIGURE_WIDTH = 480;
export const FIGURE_HEIGHT = 300;
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/** Tableau 10: series colours (runs, and ours/the report's). */
export const SERIES_COLORS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#ff9da6', '#9d755d', '#bab0ac'];
export const SPLIT_LABELS: Record<Split, string> = { train: 'training', validation: 'validation' };
/** Training solid, validation dashed. */
export const SPLIT_DASHES: Record<Split, number[]> = { train: [1, 0], validation: [6, 4] };
const SPLIT_COLORS: Record<Split, string> = { train: SERIES_COLORS[0], validation: SERIES_COLORS[1] };
const FAILED_COLOR = '#d62728';

const METRIC_TITLES: Record<Metric, string> = { cost: 'cost (loss + λ‖W‖²)', loss: 'loss (cross-entropy)', accuracy: 'accuracy' };

/** Shared look; render.ts adds nothing but the font (and a white background). */
export const FIGURE_THEME = {
  font: FIGURE_FONT,
  background: 'white',
  padding: 8,
  title: { fontSize: 15, fontWeight: 'bold', anchor: 'start', offset: 12, subtitleFontSize: 11.5, subtitleColor: '#555', subtitlePadding: 4, color: '#222' },
  axis: {
    labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', titleColor: '#333', labelColor: '#333', titlePadding: 8,
    gridColor: '#e8e8e8', domainColor: '#888', tickColor: '#888', labelLimit: 220,
  },
  legend: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', titleColor: '#333', labelColor: '#333', labelLimit: 240, symbolStrokeWidth: 2.5, symbolSize: 260, rowPadding: 4 },
  header: { labelFontSize: 12, titleFontSize: 12, labelColor: '#222' },
  view: { stroke: '#d0d0d0' },
  line: { strokeWidth: 2 },
} as const;

export interface TitleOptions {
  readonly title: string;
  /** A line under the title. */
  readonly subtitle?: string;
}

function title(options: TitleOptions, extra: readonly string[] = []): FigureSpec['title'] {
  const subtitle = [options.subtitle, ...extra].filter((s): s is string => typeof s === 'string' && s !== '');
  return subtitle.length > 0 ? { text: options.title, subtitle } : { text: options.title };
}

function base(options: TitleOptions, extra: readonly string[] = []) {
  return { $schema: SCHEMA, title: title(options, extra), config: FIGURE_THEME as FigureSpec['config'] };
}

function leftOut(count: number, what = 'point'): string[] {
  return count > 0 ? [`${count} ${what}${count === 1 ? '' : 's'} not drawn (not a finite value)`] : [];
}

interface CurveRow {
  epoch: number;
  split: string;
  value: number;
  [key: string]: string | number;
}

/** One row per epoch and split; non-finite values counted in `dropped`. */
function curveRows(history: History, metric: Metric, splits: readonly Split[], extra: Record<string, string | number> = {}): { rows: CurveRow[]; dropped: number } {
  const rows: CurveRow[] = [];
  let dropped = 0;
  for (const record of history)
    for (const split of splits) {
      const metrics = split === 'train' ? record.train : record.validation;
      if (!metrics) continue;
      const value = metrics[metric];
      if (Number.isFinite(value) && Number.isFinite(record.epoch)) rows.push({ ...extra, epoch: record.epoch, split: SPLIT_LABELS[split], value });
      else dropped++;
    }
  return { rows, dropped };
}

function hasValidation(histories: readonly History[]): boolean {
  return histories.some((h) => h.some((r) => r.validation !== null));
}

function epochScale(histories: readonly History[]) {
  const epochs = histories.flatMap((h) => h.map((r) => r.epoch)).filter(Number.isFinite);
  const min = epochs.length > 0 ? Math.min(...epochs) : 1;
  const max = epochs.length > 0 ? Math.max(...epochs) : 2;
  return { domain: [min, Math.max(max, min + 1)], nice: false, zero: false };
}

function epochAxis() {
  return { title: 'epoch', tickMinStep: 1, format: 'd', grid: true };
}

function metricAxis(metric: Metric, prefix = '') {
  return metric === 'accuracy' ? { title: `${prefix}accuracy`, format: '~%', grid: true } : { title: `${prefix}${METRIC_TITLES[metric]}`, grid: true };
}

/** Points on the lines when there are few epochs (a one-epoch line would be invisible). */
function lineMark(histories: readonly History[]) {
  const epochs = Math.max(0, ...histories.map((h) => h.length));
  return epochs <= 25 ? { type: 'line' as const, point: { filled: true, size: 22 } } : { type: 'line' as const };
}

/** Dash by split; `title: null` with the same `legend` as a colour by split merges the two legends. */
function splitEncodings(splits: readonly Split[], legend: object, title: string | null = 'split') {
  const domain = splits.map((s) => SPLIT_LABELS[s]);
  return {
    strokeDash: { field: 'split', type: 'nominal', title, scale: { domain, range: splits.map((s) => SPLIT_DASHES[s]) }, legend },
  };
}

// Above the plot: inside it, rising accuracy curves would run under the legend.
const CURVES_LEGEND = { orient: 'top', direction: 'horizontal', symbolType: 'stroke' };
const GRID_LEGEND = CURVES_LEGEND;

export interface CurvesOptions extends TitleOptions {
  readonly metric: Metric;
}

/** Training and validation `metric` per epoch of one run (validation when recorded). */
export function curvesFigure(history: History, options: CurvesOptions): FigureSpec {
  const splits: Split[] = hasValidation([history]) ? ['train', 'validation'] : ['train'];
  const { rows, dropped } = curveRows(history, options.metric, splits);
  const domain = splits.map((s) => SPLIT_LABELS[s]);
  return {
    ...base(options, leftOut(dropped)),
    width: FIGURE_WIDTH,
    height: FIGURE_HEIGHT,
    data: { values: rows },
    mark: lineMark([history]),
    encoding: {
      x: { field: 'epoch', type: 'quantitative', scale: epochScale([history]), axis: epochAxis() },
      y: { field: 'value', type: 'quantitative', scale: { zero: false }, axis: metricAxis(options.metric) },
      color: { field: 'split', type: 'nominal', title: null, scale: { domain, range: splits.map((s) => SPLIT_COLORS[s]) }, legend: CURVES_LEGEND },
      ...splitEncodings(splits, CURVES_LEGEND, null),
    },
  } as FigureSpec;
}

export interface OverlayOptions extends TitleOptions {
  readonly metric: Metric;
  /** Which curves of each run: training, validation, or both (training solid, validation dashed). */
  readonly split: Split | 'both';
}

/** Several runs' `metric` per epoch on one plot, a colour per run (e.g. with and without BN). */
export function overlayFigure(runs: ReadonlyArray<{ readonly label: string; readonly history: History }>, options: OverlayOptions): FigureSpec {
  const histories = runs.map((r) => r.history);
  const splits: Split[] = options.split === 'both' ? (hasValidation(histories) ? ['train', 'validation'] : ['train']) : [options.split];
  const labels = runs.map((r) => r.label);
  let dropped = 0;
  const rows = runs.flatMap((run, index) => {
    const part = curveRows(run.history, options.metric, splits, { run: run.label, series: index });
    dropped += part.dropped;
    return part.rows;
  });
  const single = splits.length === 1;
  const yPrefix = options.split === 'both' ? '' : `${SPLIT_LABELS[options.split]} `;
  const missing = options.split === 'validation' && !hasValidation(histories) ? ['no run recorded validation metrics'] : [];
  return {
    ...base(options, [...leftOut(dropped), ...missing]),
    width: FIGURE_WIDTH,
    height: FIGURE_HEIGHT,
    data: { values: rows },
    mark: single ? { ...lineMark(histories), strokeDash: SPLIT_DASHES[splits[0]] } : lineMark(histories),
    encoding: {
      x: { field: 'epoch', type: 'quantitative', scale: epochScale(histories), axis: epochAxis() },
      y: { field: 'value', type: 'quantitative', scale: { zero: false }, axis: metricAxis(options.metric, yPrefix) },
      color: { field: 'run', type: 'nominal', title: 'run', sort: labels, scale: { domain: [...new Set(labels)], range: SERIES_COLORS }, legend: { symbolType: 'stroke', ...(single ? { symbolDash: SPLIT_DASHES[splits[0]] } : {}) } },
      detail: { field: 'series', type: 'nominal' },
      ...(single ? {} : splitEncodings(splits, { symbolType: 'stroke', symbolStrokeColor: '#555' })),
    },
  } as FigureSpec;
}

export interface GridOptions extends TitleOptions {
  readonly metric: Metric;
  /** Width and height of each small plot; default 200 × 150. */
  readonly cellWidth?: number;
  readonly cellHeight?: number;
}

/**
 * Small multiples: one plot per cell (rows e.g. with / without BN, columns e.g. η values), in the
 * order the cells come, training solid and validation dashed. Cost and loss get a y scale per
 * plot (a diverging run would flatten the rest); accuracy shares one.
 */
export function gridFigure(cells: ReadonlyArray<{ readonly row: string; readonly column: string; readonly history: History }>, options: GridOptions): FigureSpec {
  const histories = cells.map((c) => c.history);
  const splits: Split[] = hasValidation(histories) ? ['train', 'validation'] : ['train'];
  const domain = splits.map((s) => SPLIT_LABELS[s]);
  let dropped = 0;
  const rows = cells.flatMap((cell, index) => {
    const part = curveRows(cell.history, options.metric, splits, { row: cell.row, column: cell.column, cell: index });
    dropped += part.dropped;
    return part.rows;
  });
  const rowOrder = [...new Set(cells.map((c) => c.row))];
  const columnOrder = [...new Set(cells.map((c) => c.column))];
  return {
    ...base(options, leftOut(dropped)),
    data: { values: rows },
    facet: {
      row: { field: 'row', type: 'nominal', sort: rowOrder, title: null, header: { labelAngle: -90, labelFontWeight: 'bold', labelPadding: 6 } },
      column: { field: 'column', type: 'nominal', sort: columnOrder, title: null, header: { labelFontWeight: 'bold', labelPadding: 6 } },
    },
    spec: {
      width: options.cellWidth ?? 200,
      height: options.cellHeight ?? 150,
      mark: lineMark(histories),
      encoding: {
        x: { field: 'epoch', type: 'quantitative', scale: epochScale(histories), axis: epochAxis() },
        y: { field: 'value', type: 'quantitative', scale: { zero: false }, axis: { ...metricAxis(options.metric), title: options.metric } },
        color: { field: 'split', type: 'nominal', title: null, scale: { domain, range: splits.map((s) => SPLIT_COLORS[s]) }, legend: GRID_LEGEND },
        detail: { field: 'cell', type: 'nominal' },
        ...splitEncodings(splits, GRID_LEGEND, null),
      },
    },
    resolve: { scale: { y: options.metric === 'accuracy' ? 'shared' : 'independent' } },
  } as FigureSpec;
}

export interface SearchPoint {
  readonly learningRate: number;
  readonly lambda: number;
  /** Null (or anything) for a trial that did not complete. */
  readonly validationAccuracy: number | null;
  /** 'completed', or 'diverged' / 'failed' (@bnmlp/trainer `TrialStatus`): drawn as crosses. */
  readonly status: string;
}

/**
 * A log axis over `values`: a domain a little wider than the data (no rounding out to whole
 * decades, which can leave most of the plot empty) and at most `maxTicks` tick values inside it,
 * evenly spread in log space and as round as possible (powers of ten first, then 5×, 2×, 3×, …).
 */
export function logAxisRange(values: readonly number[], maxTicks = 7): { domain: [number, number]; ticks: number[] } {
  const positive = values.filter((v) => v > 0 && Number.isFinite(v));
  if (positive.length === 0) return { domain: [0.001, 1], ticks: [0.001, 0.01, 0.1, 1] };
  const lo = Math.log10(Math.min(...positive));
  const hi = Math.log10(Math.max(...positive));
  const pad = hi - lo < 1e-9 ? 0.5 : Math.max(0.06, 0.05 * (hi - lo));
  const domain: [number, number] = [10 ** (lo - pad), 10 ** (hi + pad)];
  const span = hi - lo + 2 * pad;
  const minGap = span / (maxTicks + 1);
  const chosen: number[] = [];
  for (const mantissa of [1, 5, 2, 3, 4, 1.5, 2.5, 6, 7, 8, 9])
    for (let k = Math.floor(lo - pad); k <= Math.ceil(hi + pad); k++) {
      const tick = Number((mantissa * 10 ** k).toPrecision(6));
      if (tick < domain[0] || tick > domain[1] || chosen.length >= maxTicks) continue;
      if (chosen.every((c) => Math.abs(Math.log10(c) - Math.log10(tick)) >= minGap)) chosen.push(tick);
    }
  return { domain, ticks: chosen.sort((a, b) => a - b) };
}

function formatPercent(value: number): string {
  return `${(100 * value).toFixed(2)}%`;
}

/**
 * Random-search trials over log-scale η (x) and λ (y), coloured by validation accuracy (viridis);
 * trials that did not complete as red crosses; the best trial ringed. Trials with η ≤ 0 or λ ≤ 0
 * cannot sit on a log axis: the subtitle counts them.
 */
export function searchScatterFigure(points: readonly SearchPoint[], options: TitleOptions): FigureSpec {
  const drawable = points.filter((p) => p.learningRate > 0 && p.lambda > 0 && Number.isFinite(p.learningRate) && Number.isFinite(p.lambda));
  const rows = drawable.map((p) => {
    const completed = p.status === 'completed' && typeof p.validationAccuracy === 'number' && Number.isFinite(p.validationAccuracy);
    return { learningRate: p.learningRate, lambda: p.lambda, validationAccuracy: completed ? p.validationAccuracy : null, status: completed ? 'completed' : p.status, completed };
  });
  const completed = rows.filter((r) => r.completed);
  const best = completed.reduce<(typeof rows)[number] | null>((b, r) => (b === null || r.validationAccuracy! > b.validationAccuracy! ? r : b), null);
  const failedStatuses = [...new Set(rows.filter((r) => !r.completed).map((r) => r.status))];
  const notes = [
    best ? `best: ${formatPercent(best.validationAccuracy!)} at η ${best.learningRate.toPrecision(3)}, λ ${best.lambda.toPrecision(3)} (ringed)` : 'no trial completed',
    ...(points.length > drawable.length ? [`${points.length - drawable.length} trial${points.length - drawable.length === 1 ? '' : 's'} with η or λ ≤ 0 not drawn (log scales)`] : []),
  ];
  const logAxis = (field: 'learningRate' | 'lambda', title: string) => {
    const { domain, ticks } = logAxisRange(drawable.map((p) => p[field]));
    return { field, type: 'quantitative', title, scale: { type: 'log', domain, nice: false }, axis: { format: '~e', grid: true, values: ticks } };
  };
  const x = logAxis('learningRate', 'learning rate η (log scale)');
  const y = logAxis('lambda', 'L2 regularization λ (log scale)');
  const layers: object[] = [
    {
      transform: [{ filter: 'datum.completed' }],
      mark: { type: 'point', filled: true, size: 90, opacity: 0.9, stroke: '#333', strokeWidth: 0.6 },
      encoding: { x, y, color: { field: 'validationAccuracy', type: 'quantitative', title: 'validation accuracy', scale: { scheme: 'viridis' }, legend: { format: '.1%', gradientLength: 180 } } },
    },
  ];
  if (failedStatuses.length > 0)
    layers.push({
      transform: [{ filter: '!datum.completed' }],
      mark: { type: 'point', filled: true, size: 110, color: FAILED_COLOR, opacity: 0.9 },
      encoding: { x, y, shape: { field: 'status', type: 'nominal', title: 'did not complete', scale: { domain: failedStatuses, range: failedStatuses.map(() => 'cross') }, legend: { symbolFillColor: FAILED_COLOR, symbolStrokeColor: FAILED_COLOR } } },
    });
  if (best)
    layers.push({
      data: { values: [best] },
      mark: { type: 'point', shape: 'circle', filled: false, size: 400, stroke: '#111', strokeWidth: 1.6 },
      encoding: { x, y },
    });
  return {
    ...base(options, notes),
    width: FIGURE_WIDTH,
    height: FIGURE_HEIGHT,
    data: { values: rows },
    layer: layers,
    resolve: { legend: { color: 'independent', shape: 'independent' } },
  } as FigureSpec;
}

export interface ConfusionOptions extends TitleOptions {
  /** Axis titles; default 'predicted class' (columns) and 'true class' (rows). */
  readonly columnTitle?: string;
  readonly rowTitle?: string;
}

/** A confusion matrix (rows: true class, columns: predicted) as a heatmap with the counts written in. */
export function confusionFigure(matrix: ReadonlyArray<readonly number[]>, classNames: readonly string[], options: ConfusionOptions): FigureSpec {
  const n = classNames.length;
  if (matrix.length !== n || matrix.some((row) => row.length !== n))
    throw new RangeError(`confusionFigure: the matrix must be ${n} × ${n} (one row and column per class name), got ${matrix.length} × ${matrix.map((r) => r.length).join('/')}`);
  const names = classNames.map(String);
  if (new Set(names).size !== n) throw new RangeError('confusionFigure: class names must be distinct');
  const rows = matrix.flatMap((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return row.map((count, p) => ({ actual: names[t], predicted: names[p], count, share: total > 0 ? count / total : 0 }));
  });
  const max = Math.max(0, ...rows.map((r) => r.count));
  const size = Math.max(160, Math.min(44 * n, 560));
  const position = {
    x: { field: 'predicted', type: 'nominal', sort: names, title: options.columnTitle ?? 'predicted class', axis: { labelAngle: -40, labelAlign: 'right', domain: false, ticks: false } },
    y: { field: 'actual', type: 'nominal', sort: names, title: options.rowTitle ?? 'true class', axis: { domain: false, ticks: false } },
  };
  return {
    ...base(options),
    width: size,
    height: size,
    data: { values: rows },
    layer: [
      {
        mark: { type: 'rect', stroke: 'white', strokeWidth: 1 },
        encoding: { ...position, color: { field: 'count', type: 'quantitative', title: 'count', scale: { scheme: 'blues', domainMin: 0 }, legend: { gradientLength: Math.min(size, 200) } } },
      },
      {
        mark: { type: 'text', fontSize: n > 12 ? 9 : 11 },
        encoding: {
          ...position,
          text: { field: 'count', type: 'quantitative', format: 'd' },
          color: { condition: { test: `datum.count > ${max / 2}`, value: 'white' }, value: '#222' },
        },
      },
    ],
    config: { ...FIGURE_THEME, view: { stroke: null } } as FigureSpec['config'],
  } as FigureSpec;
}

export interface BarOptions extends TitleOptions {
  /** The value axis' title, e.g. 'test accuracy'. */
  readonly valueTitle: string;
  /** d3 format of values; default a percentage when every value is in [0, 1], else '.4~g'. */
  readonly format?: string;
  /** Legend names of the two series; default 'ours' and 'the report'. */
  readonly valueLabel?: string;
  readonly referenceLabel?: string;
}

/** Our figure beside the report's, per row (grouped horizontal bars, the values written at the ends). */
export function barFigure(rows: ReadonlyArray<{ readonly label: string; readonly value: number; readonly reference?: number }>, options: BarOptions): FigureSpec {
  const ours = options.valueLabel ?? 'ours';
  const theirs = options.referenceLabel ?? 'the report';
  const values: Array<{ label: string; series: string; value: number }> = [];
  let dropped = 0;
  for (const row of rows) {
    if (Number.isFinite(row.value)) values.push({ label: row.label, series: ours, value: row.value });
    else dropped++;
    if (row.reference !== undefined) {
      if (Number.isFinite(row.reference)) values.push({ label: row.label, series: theirs, value: row.reference });
      else dropped++;
    }
  }
  const all = values.map((v) => v.value);
  const fraction = all.every((v) => v >= 0 && v <= 1);
  const format = options.format ?? (fraction ? '.1%' : '.4~g');
  const axisFormat = options.format ?? (fraction ? '~%' : '~g');
  const withReference = values.some((v) => v.series === theirs);
  const series = withReference ? [ours, theirs] : [ours];
  const labels = [...new Set(rows.map((r) => r.label))];
  const maxValue = Math.max(0, ...all);
  const minValue = Math.min(0, ...all);
  const position = {
    y: { field: 'label', type: 'nominal', sort: labels, title: null, axis: { labelLimit: 260, ticks: false, domain: false } },
    yOffset: { field: 'series', type: 'nominal', sort: series, scale: { domain: series, paddingInner: 0.1 } },
    x: {
      field: 'value', type: 'quantitative', title: options.valueTitle,
      // Room for the value labels at the ends of the bars.
      scale: { domain: [minValue < 0 ? minValue * 1.18 : 0, fraction ? Math.min(1, maxValue * 1.18) || 1 : maxValue * 1.18 || 1], nice: false },
      axis: { format: axisFormat, grid: true },
    },
  };
  return {
    ...base(options, leftOut(dropped, 'value')),
    width: FIGURE_WIDTH,
    height: Math.max(80, labels.length * (withReference ? 46 : 28)),
    data: { values },
    layer: [
      {
        mark: { type: 'bar', height: { band: 1 } },
        encoding: {
          ...position,
          color: { field: 'series', type: 'nominal', title: null, sort: series, scale: { domain: series, range: [SERIES_COLORS[0], '#9d9d9d'] }, legend: { orient: 'top', direction: 'horizontal' } },
        },
      },
      {
        mark: { type: 'text', align: 'left', baseline: 'middle', dx: 4, fontSize: 10.5, color: '#222' },
        encoding: { ...position, text: { field: 'value', type: 'quantitative', format } },
      },
    ],
  } as FigureSpec;
}
