import { FIGURE_HEIGHT, FIGURE_THEME, FIGURE_WIDTH, logAxisRange, SERIES_COLORS, type FigureSpec, type TitleOptions } from './figures.js';

/*
`bnmlp bench --sweep`'s figure: ms per train step against the hidden widths, one line per batch
size (colour) and implementation (bnmlp solid, the peer dashed), log y. Same look as the report's
figures (figures.ts); rendered with render.ts's writeFigure.
*/

export interface SweepFigurePoint {
  readonly batch: number;
  /** The hidden widths as shown on the x axis, e.g. '500,300'. */
  readonly hidden: string;
  /** 'bnmlp', or the peer's label. */
  readonly implementation: string;
  readonly msPerStep: number;
}

export interface SweepFigureOptions extends TitleOptions {
  /** x axis order (default: first appearance). */
  readonly hiddenOrder?: readonly string[];
  /** Legend order; the first is drawn solid, the others dashed. */
  readonly implementations?: readonly string[];
  /** More subtitle lines. */
  readonly notes?: readonly string[];
}

const DASHES = [[1, 0], [6, 4], [2, 3]];

export function sweepFigure(points: readonly SweepFigurePoint[], options: SweepFigureOptions): FigureSpec {
  const drawable = points.filter((p) => Number.isFinite(p.msPerStep) && p.msPerStep > 0);
  const hiddenOrder = options.hiddenOrder ?? [...new Set(points.map((p) => p.hidden))];
  const implementations = options.implementations ?? [...new Set(points.map((p) => p.implementation))];
  const batches = [...new Set(points.map((p) => p.batch))].sort((a, b) => a - b).map((b) => `batch ${b}`);
  const rows = drawable.map((p) => ({ ...p, batchLabel: `batch ${p.batch}`, series: `${p.implementation} ${p.batch}` }));
  const { domain, ticks } = logAxisRange(rows.map((r) => r.msPerStep), 8);
  const dropped = points.length - drawable.length;
  const subtitle = [options.subtitle, ...(options.notes ?? []), dropped > 0 ? `${dropped} point${dropped === 1 ? '' : 's'} not drawn (not a positive finite value)` : undefined].filter(
    (s): s is string => typeof s === 'string' && s !== '',
  );
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: subtitle.length > 0 ? { text: options.title, subtitle } : { text: options.title },
    config: FIGURE_THEME as FigureSpec['config'],
    width: FIGURE_WIDTH,
    height: FIGURE_HEIGHT,
    data: { values: rows },
    mark: { type: 'line', point: { filled: true, size: 40 } },
    encoding: {
      x: { field: 'hidden', type: 'ordinal', sort: hiddenOrder, title: 'hidden widths', axis: { labelAngle: 0, grid: true } },
      y: { field: 'msPerStep', type: 'quantitative', title: 'ms per train step (log scale)', scale: { type: 'log', domain, nice: false }, axis: { values: ticks, format: '~g', grid: true } },
      color: { field: 'batchLabel', type: 'nominal', title: 'batch size', sort: batches, scale: { domain: batches, range: SERIES_COLORS }, legend: { symbolType: 'stroke' } },
      strokeDash: {
        field: 'implementation', type: 'nominal', title: 'implementation', sort: implementations,
        scale: { domain: implementations, range: implementations.map((_, i) => DASHES[Math.min(i, DASHES.length - 1)]) },
        legend: { symbolType: 'stroke', symbolStrokeColor: '#555' },
      },
      detail: { field: 'series', type: 'nominal' },
    },
  } as FigureSpec;
}
