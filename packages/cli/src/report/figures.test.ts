import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { barFigure, confusionFigure, curvesFigure, gridFigure, logAxisRange, overlayFigure, searchScatterFigure, SPLIT_DASHES, type FigureSpec, type History, type SearchPoint } from './figures.js';
import { compileFigure, writeFigure } from './render.js';

/** A plausible training history: cost falling, accuracy rising, validation a little worse. */
function syntheticHistory(epochs: number, { rate = 0.25, floor = 1.2, validation = true, seed = 1 } = {}): History {
  return Array.from({ length: epochs }, (_, i) => {
    const t = i + 1;
    const wobble = 0.015 * Math.sin(seed * 3.1 + t * 1.7);
    const loss = floor + 1.1 * Math.exp(-rate * t) + wobble;
    const accuracy = 0.55 - 0.42 * Math.exp(-rate * t) + wobble;
    const split = (l: number, a: number) => ({ cost: l + 0.05, loss: l, accuracy: a });
    return { epoch: t, train: split(loss, accuracy), validation: validation ? split(loss + 0.08 + 0.004 * t, accuracy - 0.03 - 0.002 * t) : null };
  });
}

const CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

function syntheticConfusion(): number[][] {
  return CLASSES.map((_, t) => CLASSES.map((_, p) => (t === p ? 520 + 17 * t : (7 * t + 13 * p) % 60)));
}

function syntheticSearch(): SearchPoint[] {
  const points: SearchPoint[] = [];
  for (let i = 0; i < 24; i++) {
    const learningRate = 10 ** (-3 + (2 * ((i * 7) % 24)) / 23);
    const lambda = 10 ** (-5 + (4 * ((i * 11) % 24)) / 23);
    const diverged = learningRate > 0.06 && lambda < 1e-3;
    points.push({ learningRate, lambda, validationAccuracy: diverged ? 0 : 0.5 - 0.08 * Math.abs(Math.log10(learningRate) + 1.7) - 0.05 * Math.abs(Math.log10(lambda) + 3), status: diverged ? 'diverged' : 'completed' });
  }
  points.push({ learningRate: 0.004, lambda: 2e-2, validationAccuracy: null, status: 'failed' });
  return points;
}

/** One spec of each kind, as the experiments draw them. */
function sampleFigures(): Record<string, FigureSpec> {
  const bn = syntheticHistory(20, { seed: 1 });
  const plain = syntheticHistory(20, { rate: 0.12, floor: 1.35, seed: 2 });
  const cells = ['with BN', 'without BN'].flatMap((row, r) =>
    ['η = 0.001', 'η = 0.01', 'η = 0.1'].map((column, c) => ({ row, column, history: syntheticHistory(12, { rate: 0.08 + 0.1 * c, floor: 1.2 + 0.1 * r, seed: r * 3 + c }) })),
  );
  return {
    curves: curvesFigure(bn, { metric: 'cost', title: 'Best recipe: cost per epoch' }),
    overlay: overlayFigure([{ label: 'with BN', history: bn }, { label: 'without BN', history: plain }], { metric: 'accuracy', split: 'both', title: '3-layer [50, 30]: accuracy, BN vs no BN' }),
    grid: gridFigure(cells, { metric: 'loss', title: '2-layer [50]: loss per learning rate' }),
    scatter: searchScatterFigure(syntheticSearch(), { title: 'Coarse search: validation accuracy' }),
    confusion: confusionFigure(syntheticConfusion(), CLASSES, { title: 'Best recipe: test confusion matrix' }),
    bar: barFigure(
      [
        { label: '3-layer with BN', value: 0.5312, reference: 0.5345 },
        { label: '3-layer without BN', value: 0.5101, reference: 0.5207 },
        { label: '9-layer with BN', value: 0.5088 },
        { label: 'best network', value: 0.5391, reference: 0.5441 },
      ],
      { title: 'Test accuracy per experiment', valueTitle: 'test accuracy' },
    ),
  };
}

type Json = Record<string, unknown>;

function values(spec: object): Json[] {
  return ((spec as { data?: { values?: Json[] } }).data?.values ?? []) as Json[];
}

/** Every object in a spec having key `key`, depth-first. */
function collect(spec: unknown, key: string): unknown[] {
  if (Array.isArray(spec)) return spec.flatMap((v) => collect(v, key));
  if (spec === null || typeof spec !== 'object') return [];
  return Object.entries(spec as Json).flatMap(([k, v]) => (k === key ? [v, ...collect(v, key)] : collect(v, key)));
}

describe('figure specs', () => {
  const figures = sampleFigures();

  test.each(Object.keys(figures))('%s compiles with Vega-Lite without a warning, titled, data inline', (name) => {
    const spec = figures[name];
    const { vega, warnings } = compileFigure(spec);
    expect(warnings).toEqual([]);
    expect(vega.marks?.length ?? 0).toBeGreaterThan(0);
    expect(spec.$schema).toMatch(/vega-lite\/v6/);
    expect(JSON.stringify(spec.title)).toContain('"text"');
    expect(values(spec).length).toBeGreaterThan(0);
    expect(collect(spec, 'url')).toEqual([]);
    // Plain JSON: survives a round trip unchanged.
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
  });

  test('curves: every epoch of both splits, training solid and validation dashed, axis titles', () => {
    const history = syntheticHistory(7);
    const spec = curvesFigure(history, { metric: 'loss', title: 'loss' }) as unknown as Json;
    const rows = values(spec);
    expect(rows).toHaveLength(14);
    expect(rows.filter((r) => r.split === 'validation').map((r) => r.value)).toEqual(history.map((h) => h.validation!.loss));
    const encoding = spec.encoding as Json;
    expect(encoding.strokeDash).toMatchObject({ field: 'split', scale: { domain: ['training', 'validation'], range: [SPLIT_DASHES.train, SPLIT_DASHES.validation] } });
    expect(encoding.x).toMatchObject({ axis: { title: 'epoch' } });
    expect(JSON.stringify(encoding.y)).toContain('loss');
    expect(spec.width).toBe(480);
    expect(spec.height).toBe(300);
  });

  test('curves: no validation → training only; non-finite values left out and counted', () => {
    const history = syntheticHistory(5, { validation: false }).map((r, i) => (i === 4 ? { ...r, train: { cost: Number.NaN, loss: Number.POSITIVE_INFINITY, accuracy: 0.1 } } : r));
    const spec = curvesFigure(history, { metric: 'cost', title: 'diverged' });
    expect(values(spec)).toHaveLength(4);
    expect(JSON.stringify(spec.title)).toContain('1 point not drawn');
    expect(compileFigure(spec).warnings).toEqual([]);
  });

  test('curves: a single epoch still draws points', () => {
    const spec = curvesFigure(syntheticHistory(1), { metric: 'accuracy', title: 'one epoch' }) as unknown as Json;
    expect(spec.mark).toMatchObject({ type: 'line', point: { filled: true } });
    expect(compileFigure(spec).warnings).toEqual([]);
  });

  test('overlay: a colour per run; one split → fixed dash and the split in the axis title', () => {
    const runs = [{ label: 'a', history: syntheticHistory(3) }, { label: 'b', history: syntheticHistory(4) }];
    const both = overlayFigure(runs, { metric: 'cost', split: 'both', title: 't' }) as unknown as Json;
    expect(values(both)).toHaveLength(14);
    expect((both.encoding as Json).color).toMatchObject({ field: 'run', scale: { domain: ['a', 'b'] } });
    expect((both.encoding as Json).strokeDash).toBeDefined();
    const validation = overlayFigure(runs, { metric: 'accuracy', split: 'validation', title: 't' }) as unknown as Json;
    expect(values(validation).every((r) => r.split === 'validation')).toBe(true);
    expect(validation.mark).toMatchObject({ strokeDash: SPLIT_DASHES.validation });
    expect(JSON.stringify((validation.encoding as Json).y)).toContain('validation accuracy');
    for (const spec of [both, validation]) expect(compileFigure(spec).warnings).toEqual([]);
  });

  test('grid: facets rows and columns in the order given; independent y for loss, shared for accuracy', () => {
    const cells = ['with BN', 'without BN'].flatMap((row) => ['η = 0.1', 'η = 0.001'].map((column) => ({ row, column, history: syntheticHistory(2) })));
    const spec = gridFigure(cells, { metric: 'loss', title: 'g' }) as unknown as Json;
    expect(spec.facet).toMatchObject({ row: { field: 'row', sort: ['with BN', 'without BN'] }, column: { field: 'column', sort: ['η = 0.1', 'η = 0.001'] } });
    expect(spec.resolve).toEqual({ scale: { y: 'independent' } });
    expect(values(spec)).toHaveLength(4 * 2 * 2);
    expect((gridFigure(cells, { metric: 'accuracy', title: 'g' }) as unknown as Json).resolve).toEqual({ scale: { y: 'shared' } });
  });

  test('search scatter: log η and λ, viridis by accuracy, failed trials as crosses, best ringed', () => {
    const points = syntheticSearch();
    const spec = searchScatterFigure([...points, { learningRate: 0.01, lambda: 0, validationAccuracy: 0.4, status: 'completed' }], { title: 's' }) as unknown as Json;
    const scales = collect(spec, 'scale') as Json[];
    expect(scales.filter((s) => s.type === 'log').length).toBeGreaterThanOrEqual(2);
    const layers = spec.layer as Json[];
    expect(JSON.stringify(layers[0])).toContain('viridis');
    expect(JSON.stringify(layers[1])).toContain('cross');
    const rows = values(spec);
    expect(rows).toHaveLength(points.length);
    expect(rows.filter((r) => !r.completed).map((r) => r.status).sort()).toEqual(points.filter((p) => p.status !== 'completed').map((p) => p.status).sort());
    expect(JSON.stringify(spec.title)).toContain('1 trial with η or λ ≤ 0 not drawn');
    expect(JSON.stringify(spec.title)).toMatch(/best: \d+\.\d\d%/);
    // Completed only: no cross layer, still clean.
    const clean = searchScatterFigure(points.filter((p) => p.status === 'completed'), { title: 's' });
    expect(JSON.stringify(clean)).not.toContain('cross');
    expect(compileFigure(clean).warnings).toEqual([]);
    expect(compileFigure(searchScatterFigure([], { title: 'empty' })).warnings).toEqual([]);
  });

  test('log axes: a domain just around the data, few round ticks inside it', () => {
    const coarse = logAxisRange([1e-3, 0.004, 0.1]);
    expect(coarse.domain[0]).toBeLessThan(1e-3);
    expect(coarse.domain[0]).toBeGreaterThan(5e-4);
    expect(coarse.domain[1]).toBeGreaterThan(0.1);
    expect(coarse.domain[1]).toBeLessThan(0.2);
    expect(coarse.ticks).toEqual(expect.arrayContaining([0.001, 0.01, 0.1]));
    const fine = logAxisRange([0.008, 0.012, 0.029]);
    expect(fine.ticks.length).toBeGreaterThanOrEqual(3);
    for (const { domain, ticks } of [coarse, fine, logAxisRange([1e-5, 1e-1]), logAxisRange([0.01])]) {
      expect(ticks.length).toBeLessThanOrEqual(7);
      expect(ticks.every((t) => t >= domain[0] && t <= domain[1])).toBe(true);
      expect([...ticks].sort((a, b) => a - b)).toEqual(ticks);
    }
  });

  test('confusion: one cell per (true, predicted) with its count; size checked', () => {
    const matrix = syntheticConfusion();
    const spec = confusionFigure(matrix, CLASSES, { title: 'c' });
    const rows = values(spec);
    expect(rows).toHaveLength(100);
    expect(rows.find((r) => r.actual === 'cat' && r.predicted === 'dog')!.count).toBe(matrix[3][5]);
    expect(JSON.stringify(spec)).toContain('"text":{"field":"count"');
    expect(() => confusionFigure([[1, 2]], ['a', 'b'], { title: 'c' })).toThrow(/2 × 2/);
  });

  test('bar: ours and the report side by side; percentages for fractions', () => {
    const spec = barFigure([{ label: 'a', value: 0.5, reference: 0.52 }, { label: 'b', value: 0.4 }], { title: 'b', valueTitle: 'test accuracy' });
    expect(values(spec)).toEqual([
      { label: 'a', series: 'ours', value: 0.5 },
      { label: 'a', series: 'the report', value: 0.52 },
      { label: 'b', series: 'ours', value: 0.4 },
    ]);
    expect(JSON.stringify(spec)).toContain('".1%"');
    const plain = barFigure([{ label: 'seconds', value: 12.5 }], { title: 'b', valueTitle: 'seconds' });
    expect(JSON.stringify(plain)).not.toContain('%');
    expect(compileFigure(plain).warnings).toEqual([]);
  });
});

describe('figure files', () => {
  // One PNG of each kind, to look at: $TMPDIR/bnmlp-figures/<kind>.png.
  test('every kind renders to SVG, PNG and its spec', async () => {
    const dir = join(tmpdir(), 'bnmlp-figures');
    mkdirSync(dir, { recursive: true });
    for (const [name, spec] of Object.entries(sampleFigures())) {
      const paths = await writeFigure(dir, name, spec, { onWarning: (m) => expect.fail(`${name}: ${m}`) });
      expect(paths.png).toBe(join(dir, `${name}.png`));
    }
  });
});
