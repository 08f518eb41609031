import * as reference from '@bnmlp/reference';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCase } from '../commands/diagnose.js';
import { tinyCifarDir } from '../test-support/paths.js';
import { CATALOGUE, catalogueEntry } from './catalogue.js';
import { diagnose, type Diagnosis } from './diagnosis.js';
import { answerValues } from './example.js';
import { decodeFile, encodeFile, type FileFormat } from './files.js';
import { CaseLab } from './lab.js';
import { formatDiagnosis } from './report.js';
import type { Layout } from './submission.js';

/*
Every catalogue entry, planted: the gradients a program with that mistake (or convention) hands in
(the entry's `simulate`), saved as a user would in each of the three formats and layouts, must be
diagnosed as that entry first, and as no other entry within the match tolerance. One small case:
3 layers 10 → 12 → 8 → 10, BN with γ/β, ε = 1e-3, λ = 0.01, a batch of 8.
*/

let lab: CaseLab;
beforeAll(async () => {
  const { c } = await buildCase(
    { layers: 3, dims: 10, hidden: [12, 8], classes: 10, batch: 8, batchNorm: true, affine: true, lambda: 0.01, eps: 1e-3, runningAverageKeep: 0.9, seed: 1 },
    tinyCifarDir,
    {},
    { importReference: async () => reference },
  );
  lab = new CaseLab(reference, c);
});

/** .npz as numpy code saves it (row-sample, with h); .mat as DD2424 MATLAB code (column-sample, with h); .json without h, both layouts. */
const EXPORTS: ReadonlyArray<{ format: FileFormat; layout: Layout | 'alternate'; withH: boolean }> = [
  { format: 'npz', layout: 'row-sample', withH: true },
  { format: 'mat', layout: 'column-sample', withH: true },
  { format: 'json', layout: 'alternate', withH: false },
];

function planted(name: string, format: FileFormat, layout: Layout, withH: boolean, analyticOnly = false): Diagnosis {
  const entry = catalogueEntry(name)!;
  const sim = entry.simulate(lab);
  const values = answerValues(analyticOnly ? { analytic: sim.analytic } : sim, layout, { withH });
  const file = `theirs.${format}`;
  return diagnose(lab, decodeFile(format, encodeFile(format, values), file), { case: 'case.npz', theirs: file });
}

describe('the catalogue', () => {
  it('has at least 15 known mistakes plus the conventions, each with a title, explanation, fix and the line it alters', () => {
    const mistakes = CATALOGUE.filter((e) => e.kind === 'mistake');
    expect(mistakes.length).toBeGreaterThanOrEqual(15);
    expect(CATALOGUE.filter((e) => e.kind === 'convention').map((e) => e.name)).toEqual(['sum-loss', 'half-penalty', 'eps-value']);
    expect(new Set(CATALOGUE.map((e) => e.name)).size).toBe(CATALOGUE.length);
    for (const e of CATALOGUE) {
      for (const field of [e.title, e.explanation, e.fix, e.alters]) expect(field.length, e.name).toBeGreaterThan(5);
      expect(e.applies(lab.c.config), `${e.name} applies to the test case`).toBe(true);
    }
  });

  for (const entry of CATALOGUE)
    describe(entry.name, () => {
      EXPORTS.forEach(({ format, layout, withH }) => {
        const chosen: Layout = layout === 'alternate' ? (CATALOGUE.indexOf(entry) % 2 === 0 ? 'row-sample' : 'column-sample') : layout;
        it(`planted and saved as .${format} (${chosen}${withH ? ', with h' : ', no h'}) is diagnosed as ${entry.name} first and as nothing else`, () => {
          const d = planted(entry.name, format, chosen, withH);
          const text = formatDiagnosis(d);
          if (entry.kind === 'convention') {
            expect(d.passed, text).toBe(true);
            expect(d.convention?.names, text).toEqual([entry.name]);
            expect(d.sides.every((s) => s.verdict === 'right' && s.causes.length === 0), text).toBe(true);
            expect(text).toContain('convention (not a bug)');
            expect(text).toMatch(/^RIGHT: every array you gave is right for your conventions/m);
            return;
          }
          expect(d.passed, text).toBe(false);
          expect(d.convention, text).toBeNull();
          for (const side of d.sides) {
            if (entry.sides.includes(side.side)) {
              expect(side.verdict, `${side.side}\n${text}`).toBe('wrong');
              expect(side.causes.map((m) => m.name), `${side.side}\n${text}`).toEqual([entry.name]);
            } else expect(side.verdict, `${side.side}\n${text}`).toBe('right');
          }
          expect(text).toContain(`1. ${entry.name}: ${entry.title}`);
          expect(text).toContain(entry.fix);
          expect(text).not.toContain('no known cause matches');
          if (chosen === 'column-sample' && entry.name !== 'layer-index-off-by-one') expect(d.theirs.layouts, text).toContain('transposed W recognised');
        });
      });
    });

  it('analytic gradients alone: a backward mistake is still named; the convention twins name the bug and mention the convention', () => {
    for (const entry of CATALOGUE.filter((e) => e.kind === 'mistake' && e.sides.includes('analytic'))) {
      const d = planted(entry.name, 'npz', 'row-sample', false, true);
      const analytic = d.sides.find((s) => s.side === 'analytic')!;
      expect(analytic.causes.map((m) => m.name), entry.name).toEqual([entry.name]);
      const twin = entry.name === 'l2-gradient-lambda-w' ? 'half-penalty' : entry.name === 'loss-gradient-not-divided' ? 'sum-loss' : null;
      if (twin) expect(analytic.causes[0].note, entry.name).toContain(`only a convention (${twin}): add your numeric gradients (num_*) to tell`);
      else expect(analytic.causes[0].note, entry.name).toBeUndefined();
    }
    // With their numeric gradients of the same cost, the twin is a convention (see the sum-loss and half-penalty cases above).
  });
});
