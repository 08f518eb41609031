import type { NamedValues } from './arrays.js';
import { layerWidths, type ParameterSpec } from './case.js';
import { CATALOGUE, EPS_CANDIDATES, RELERR_LIMIT, catalogueEntry, type CatalogueSide, type CauseMatch, type MatchContext } from './catalogue.js';
import { DiagnoseInputError } from './errors.js';
import { CASE_CONVENTION, KINK_STEP_UNKNOWN_H, SAMPLED_ENTRIES, conventionKnobs, type CaseLab, type ConventionSetting } from './lab.js';
import { expectedShapes, orient, readSubmission, transposeSquare, type Layout, type RawGradient, type Side } from './submission.js';

/*
The diagnosis of someone's gradients on a case:

1. Their arrays are read (submission.ts) and put in our row-sample layout, whichever layout each came in.
2. Every array is judged against the exact gradient (float64, model.ts with every switch right,
   = @bnmlp/reference's): right when every entry has |theirs − exact| ≤ tolerance × scale, the scale
   being the parameter's largest |exact entry| (at least 1 % of the network's largest, so that a bias
   before BN, exactly 0, is judged too). Numeric entries whose ±h step flips a ReLU are left out (a
   difference quotient across a kink is no derivative), at their h or, unknown, at 1e-4.
3. Conventions first: when their numeric gradients (or, without numeric ones, their analytic ones)
   are all right for a cost with the sum instead of the mean, λ/2 instead of λ, or another ε, that
   cost is theirs: every array is judged against its exact gradient and the difference is reported
   as a convention. Analytic arrays alone cannot tell the sum convention from the
   "not divided by n" bug, or λ/2 from "λW instead of 2λW": then the bug is named and the
   convention mentioned with it.
4. For each side (analytic, numeric) with a wrong array, every catalogue entry's variant is compared
   with all their arrays of that side; the entries within the match tolerance are the causes, best
   (smallest mismatch) first. Without one, the closest entries per parameter are shown.
*/

export const DEFAULT_TOLERANCE = 1e-4;
export const DEFAULT_MATCH_TOLERANCE = 1e-3;

export interface DiagnoseOptions {
  readonly tolerance?: number;
  readonly matchTolerance?: number;
}

export interface EntryReport {
  /** In our row-sample layout. */
  readonly index: number[];
  /** In their file's layout (differs for transposed W). */
  readonly theirIndex: number[];
  readonly theirs: number;
  readonly exact: number;
  /** |theirs − exact| / scale. */
  readonly scaledError: number;
  /** |theirs − exact| / max(1e-8, |theirs| + |exact|). */
  readonly relativeError: number;
}

export interface ArrayReport {
  /** As named in their file. */
  readonly name: string;
  readonly side: Side;
  /** Our parameter it was compared with; null when its shape fits none of that name. */
  readonly parameter: string | null;
  readonly layout: Layout | null;
  readonly shape: readonly number[];
  readonly verdict: 'right' | 'wrong';
  readonly scale: number;
  readonly maxRelativeError: number;
  readonly maxScaledError: number;
  readonly worst: EntryReport | null;
  /** The worst few entries, for wrong arrays. */
  readonly worstEntries: EntryReport[];
  /** Numeric entries left out at ReLU kinks. */
  readonly kinks: number;
  /** Causes matching all of this side, for a wrong array. */
  readonly causes: string[];
  readonly note: string | null;
}

export interface RelerrReport {
  readonly parameter: string;
  readonly reported: number;
  readonly verdict: 'right' | 'wrong';
  readonly note: string;
}

export interface SideReport {
  readonly side: CatalogueSide;
  readonly given: number;
  readonly wrong: number;
  readonly verdict: 'right' | 'wrong';
  /** Entries explaining every array of the side, best first. */
  readonly causes: CauseMatch[];
  /** Without a full match: entries matching single parameters. */
  readonly partial: CauseMatch[];
}

export interface ConventionReport {
  readonly setting: ConventionSetting;
  readonly names: string[];
  readonly lines: string[];
  /** Other ε values that fit as well. */
  readonly alsoFits: number[];
}

export interface Diagnosis {
  readonly format: 'bnmlp-diagnosis';
  readonly version: 1;
  readonly passed: boolean;
  readonly case: { readonly file: string; readonly summary: string; readonly cost: number };
  readonly theirs: { readonly file: string; readonly layouts: string; readonly h: number | null; readonly ignored: string[]; readonly notGiven: string[] };
  readonly rule: { readonly tolerance: number; readonly matchTolerance: number; readonly text: string[] };
  readonly convention: ConventionReport | null;
  readonly arrays: ArrayReport[];
  readonly relerr: RelerrReport[];
  readonly sides: SideReport[];
  readonly notes: string[];
}

interface Resolved {
  readonly raw: RawGradient;
  readonly spec: ParameterSpec | null;
  data: Float64Array | null;
  layout: Layout | 'either' | null;
}

interface Comparison {
  readonly maxScaled: number;
  readonly maxRel: number;
  /** Entry indices, worst first (up to 3). */
  readonly top: number[];
  readonly compared: number;
}

function compare(t: ArrayLike<number>, x: ArrayLike<number>, scale: number, exclude?: Uint8Array | null): Comparison {
  let maxScaled = 0;
  let maxRel = 0;
  let compared = 0;
  const errors: Array<[number, number]> = [];
  for (let i = 0; i < t.length; i++) {
    if (exclude?.[i] || Number.isNaN(x[i])) continue;
    compared++;
    const diff = Math.abs(t[i] - x[i]);
    const scaled = diff / scale;
    maxScaled = Math.max(maxScaled, scaled);
    maxRel = Math.max(maxRel, diff / Math.max(1e-8, Math.abs(t[i]) + Math.abs(x[i])));
    errors.push([scaled, i]);
  }
  errors.sort((a, b) => b[0] - a[0]);
  return { maxScaled, maxRel, top: errors.slice(0, 3).map(([, i]) => i), compared };
}

function unflatten(shape: readonly number[], flat: number): number[] {
  return shape.length === 2 ? [Math.floor(flat / shape[1]), flat % shape[1]] : [flat];
}

const fmt = (v: number) => (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5) ? v.toExponential() : String(v));

export function caseSummary(lab: CaseLab): string {
  const c = lab.c.config;
  const bn = c.batchNorm ? `batch norm${c.affine ? ' with gamma/beta' : ''} (eps ${fmt(c.eps)}, biased variance)` : 'no batch norm';
  return `${c.layers}-layer MLP ${layerWidths(c).join(' → ')}, ${bn}, λ = ${fmt(c.lambda)}, batch of ${c.batch}; J = ${lab.c.cost}`;
}

function describeConvention(setting: ConventionSetting, lab: CaseLab, alsoFits: number[]): { names: string[]; lines: string[] } {
  const names: string[] = [];
  const lines: string[] = [];
  if (setting.loss === 'sum') {
    names.push('sum-loss');
    lines.push(`sum-loss: ${catalogueEntry('sum-loss')!.explanation}`);
  }
  if (setting.penalty === 0.5) {
    names.push('half-penalty');
    lines.push(`half-penalty: ${catalogueEntry('half-penalty')!.explanation}`);
  }
  if (setting.eps !== null) {
    names.push('eps-value');
    const others = alsoFits.length ? ` (${alsoFits.map(fmt).join(', ')} fit as well)` : '';
    lines.push(`eps-value: your gradients fit ε = ${fmt(setting.eps)}${others}; the case's is ${fmt(lab.c.config.eps)}`);
  }
  return { names, lines };
}

function conventionSettings(lab: CaseLab): ConventionSetting[] {
  const c = lab.c.config;
  const eps: Array<number | null> = [null, ...(c.batchNorm && c.layers > 1 ? EPS_CANDIDATES.filter((e) => Math.abs(e - c.eps) > 1e-3 * c.eps) : [])];
  const out: ConventionSetting[] = [];
  for (const e of eps)
    for (const loss of ['mean', 'sum'] as const)
      for (const penalty of c.lambda > 0 ? ([1, 0.5] as const) : ([1] as const)) out.push({ loss, penalty, eps: e });
  return out;
}

/** Diagnoses the gradients in `values` (their file) against the case in `lab`. */
export function diagnose(lab: CaseLab, values: NamedValues, files: { readonly case: string; readonly theirs: string }, options: DiagnoseOptions = {}): Diagnosis {
  const tolerance = options.tolerance ?? DEFAULT_TOLERANCE;
  const matchTolerance = options.matchTolerance ?? Math.max(DEFAULT_MATCH_TOLERANCE, 10 * tolerance);
  const source = files.theirs;
  const sub = readSubmission(values, source);
  const specs = lab.specs;
  const specOf = (kind: string, layer: number) => specs.find((s) => s.kind === kind && s.layer === layer) ?? null;

  // 1. Names and shapes.
  const resolved: Resolved[] = sub.arrays.map((raw) => {
    const spec = specOf(raw.kind, raw.index);
    const o = spec ? orient(raw, spec) : null;
    return { raw, spec: o ? spec : null, data: o?.data ?? null, layout: o?.layout ?? null };
  });
  const shifted = new Set<Side>();
  for (const side of ['analytic', 'numeric'] as const) {
    const ofSide = resolved.filter((r) => r.raw.side === side);
    const misfit = ofSide.find((r) => r.spec === null);
    if (!misfit) continue;
    // Shapes that fit the neighbouring layer everywhere: layer indices off by one, a diagnosis rather than bad input.
    const neighbour = [1, -1].some((s) => ofSide.every((r) => {
      const target = specOf(r.raw.kind, r.raw.index + s);
      return target !== null && orient(r.raw, target) !== null;
    }));
    if (neighbour) {
      shifted.add(side);
      continue;
    }
    const own = specOf(misfit.raw.kind, misfit.raw.index);
    throw new DiagnoseInputError(
      source,
      own
        ? `${misfit.raw.fileName} has shape ${misfit.raw.shape.join('×') || 'scalar'}; expected ${expectedShapes(own)}`
        : `${misfit.raw.fileName} is not a parameter of this case (it has ${specs.map((s) => s.name).join(', ')})`,
    );
  }
  const given = (side: Side) => new Set(resolved.filter((r) => r.raw.side === side).map((r) => r.raw.name));
  const analyticNames = given('analytic');
  if (analyticNames.size > 0 && !shifted.has('analytic')) {
    const missing = specs.filter((s) => !analyticNames.has(s.name)).map((s) => s.name);
    if (missing.length)
      throw new DiagnoseInputError(
        source,
        `missing parameter ${missing.join(', ')}: give the analytic gradient of every parameter (${specs.map((s) => s.name).join(', ')}); numeric ones (num_*) may be a subset`,
      );
  }
  const exactBase = lab.gradients();
  // Square W: the orientation closer to the exact gradient (else that of the other W's).
  const majority = (() => {
    const layouts = resolved.map((r) => r.layout).filter((l): l is Layout => l === 'row-sample' || l === 'column-sample');
    const columns = layouts.filter((l) => l === 'column-sample').length;
    return columns > layouts.length - columns ? 'column-sample' : 'row-sample';
  })();
  for (const r of resolved) {
    if (r.layout !== 'either' || !r.spec || !r.data) continue;
    if (r.spec.kind !== 'W') {
      r.layout = majority;
      continue;
    }
    const n = r.spec.shape[0];
    const exact = exactBase.get(r.spec.name)!;
    const asGiven = compare(r.data, exact, 1).maxScaled;
    const transposed = transposeSquare(r.data, n);
    const asTransposed = compare(transposed, exact, 1).maxScaled;
    if (asTransposed < asGiven * 0.5) {
      r.data = transposed;
      r.layout = 'column-sample';
    } else if (asGiven < asTransposed * 0.5) r.layout = 'row-sample';
    else {
      if (majority === 'column-sample') r.data = transposed;
      r.layout = majority;
    }
  }
  const theirsOf = (side: Side) => new Map(resolved.filter((r) => r.raw.side === side && r.spec && r.data).map((r) => [r.spec!.name, r.data!]));
  const analytic = theirsOf('analytic');
  const numeric = theirsOf('numeric');
  const hasNumeric = resolved.some((r) => r.raw.side === 'numeric');
  const kinkMasks: ReadonlyMap<string, Uint8Array> | null = hasNumeric ? lab.differences({ h: sub.h ?? KINK_STEP_UNKNOWN_H }).kink : null;

  // 2./3. Conventions.
  const errors = (theirs: ReadonlyMap<string, Float64Array>, exact: ReadonlyMap<string, Float64Array>, side: Side) =>
    new Map([...theirs].map(([name, t]) => [name, compare(t, exact.get(name)!, lab.scale(name), side === 'numeric' ? kinkMasks?.get(name) : null).maxScaled]));
  const fits = (setting: ConventionSetting, side: Side) => {
    const theirs = side === 'analytic' ? analytic : numeric;
    if (theirs.size === 0) return null;
    const e = [...errors(theirs, lab.gradients(conventionKnobs(setting)), side).values()];
    return e.every((v) => v <= tolerance) ? Math.max(...e) : null;
  };
  const settings = conventionSettings(lab);
  const best = (side: Side) => {
    let found: { setting: ConventionSetting; error: number } | null = null;
    for (const s of settings.slice(1)) {
      const e = fits(s, side);
      if (e !== null && (!found || e < found.error)) found = { setting: s, error: e };
    }
    return found;
  };
  let setting = CASE_CONVENTION;
  let twinNote: string | null = null;
  const baseNumeric = numeric.size ? fits(CASE_CONVENTION, 'numeric') : null;
  const baseAnalytic = analytic.size ? fits(CASE_CONVENTION, 'analytic') : null;
  if (numeric.size && baseNumeric === null && best('numeric')) setting = best('numeric')!.setting;
  else if (analytic.size && baseAnalytic === null && (numeric.size === 0 || baseNumeric === null)) {
    const b = best('analytic');
    if (b) {
      const twin = b.setting.loss === 'sum' || b.setting.penalty === 0.5;
      if (!twin || numeric.size > 0) setting = b.setting;
      else {
        const d = describeConvention(b.setting, lab, []);
        twinNote = `or, if your cost is ${b.setting.loss === 'sum' ? 'the sum over the batch' : 'mean CE + (λ/2)Σ‖W‖²'}, only a convention (${d.names.join(', ')}): add your numeric gradients (num_*) to tell`;
      }
    }
  }
  let convention: ConventionReport | null = null;
  if (setting !== CASE_CONVENTION) {
    const side: Side = numeric.size && fits(setting, 'numeric') !== null ? 'numeric' : 'analytic';
    const alsoFits =
      setting.eps === null ? [] : settings.filter((s) => s.eps !== null && s.eps !== setting.eps && s.loss === setting.loss && s.penalty === setting.penalty && fits(s, side) !== null).map((s) => s.eps!);
    convention = { setting, alsoFits, ...describeConvention(setting, lab, alsoFits) };
  }
  const exact = lab.gradients(conventionKnobs(setting));

  // Verdicts.
  const arrayReports: ArrayReport[] = [];
  const wrongBySide = new Map<Side, Map<string, number>>([['analytic', new Map()], ['numeric', new Map()]]);
  for (const r of resolved) {
    const side = r.raw.side;
    if (!r.spec || !r.data) {
      const neighbourSpec = [1, -1].map((s) => specOf(r.raw.kind, r.raw.index + s)).find((s) => s !== null && orient(r.raw, s) !== null);
      arrayReports.push({
        name: r.raw.fileName, side, parameter: null, layout: null, shape: r.raw.shape, verdict: 'wrong', scale: NaN,
        maxRelativeError: NaN, maxScaledError: NaN, worst: null, worstEntries: [], kinks: 0, causes: [],
        note: specOf(r.raw.kind, r.raw.index) ? `has the shape of ${neighbourSpec?.name ?? 'another parameter'}` : `not a parameter of this case${neighbourSpec ? ` (shape of ${neighbourSpec.name})` : ''}`,
      });
      continue;
    }
    const name = r.spec.name;
    const scale = lab.scale(name);
    const mask = side === 'numeric' ? kinkMasks?.get(name) ?? null : null;
    const x = exact.get(name)!;
    const cmp = compare(r.data, x, scale, mask);
    const entry = (i: number): EntryReport => {
      const index = unflatten(r.spec!.shape, i);
      const theirIndex = r.layout === 'column-sample' && index.length === 2 ? [index[1], index[0]] : index;
      const diff = Math.abs(r.data![i] - x[i]);
      return { index, theirIndex, theirs: r.data![i], exact: x[i], scaledError: diff / scale, relativeError: diff / Math.max(1e-8, Math.abs(r.data![i]) + Math.abs(x[i])) };
    };
    const right = cmp.maxScaled <= tolerance;
    if (!right) wrongBySide.get(side)!.set(name, cmp.maxScaled);
    arrayReports.push({
      name: r.raw.fileName, side, parameter: name, layout: r.layout === 'either' ? null : r.layout, shape: r.raw.shape,
      verdict: right ? 'right' : 'wrong', scale, maxRelativeError: cmp.maxRel, maxScaledError: cmp.maxScaled,
      worst: cmp.top.length ? entry(cmp.top[0]) : null, worstEntries: right ? [] : cmp.top.map(entry),
      kinks: mask ? mask.reduce((a, b) => a + b, 0) : 0, causes: [], note: null,
    });
  }

  // 4. Causes per side.
  const sides: SideReport[] = [];
  for (const side of ['analytic', 'numeric'] as const) {
    const reports = arrayReports.filter((a) => a.side === side);
    if (reports.length === 0) continue;
    const wrong = reports.filter((a) => a.verdict === 'wrong');
    if (wrong.length === 0) {
      sides.push({ side, given: reports.length, wrong: 0, verdict: 'right', causes: [], partial: [] });
      continue;
    }
    const theirs = side === 'analytic' ? analytic : numeric;
    const ctx: MatchContext = {
      lab, convention: setting, h: sub.h, side, theirs, raw: resolved.filter((r) => r.raw.side === side).map((r) => r.raw), exact,
      exclude: side === 'numeric' ? kinkMasks : null, error: errors(theirs, exact, side), matchTolerance,
      analytic, numeric, relerr: sub.relerr,
    };
    const full: CauseMatch[] = [];
    const partial: CauseMatch[] = [];
    const allFit = reports.every((a) => a.parameter !== null);
    for (const entry of CATALOGUE) {
      if (entry.kind !== 'mistake' || !entry.sides.includes(side) || !entry.applies(lab.c.config)) continue;
      if (entry.match) {
        const m = entry.match(ctx);
        if (m) full.push(m);
        continue;
      }
      if (!allFit || !entry.candidates) continue;
      let bestFull: CauseMatch | null = null;
      const bestPartial = new Map<string, CauseMatch>();
      for (const candidate of entry.candidates(ctx)) {
        let worst = 0;
        let explains = true;
        for (const [name, t] of theirs) {
          const v = candidate.arrays.get(name)!;
          const skip = candidate.exclude?.get(name) ?? (side === 'numeric' ? kinkMasks?.get(name) : undefined);
          const mismatch = compare(t, v, lab.scale(name), skip).maxScaled;
          const err = ctx.error.get(name)!;
          // Only a parameter they got wrong can be explained; a right one must stay right under the variant.
          const ok = mismatch <= matchTolerance && (err <= tolerance ? mismatch <= tolerance : mismatch <= 0.1 * err);
          if (!ok) explains = false;
          worst = Math.max(worst, mismatch);
          if (ok && err > tolerance) {
            const previous = bestPartial.get(name);
            if (!previous || mismatch < previous.mismatch) bestPartial.set(name, { name: entry.name, side, mismatch, detail: candidate.detail, parameters: [name] });
          }
        }
        // A variant that changes nothing the user got wrong explains nothing.
        if (explains && [...ctx.error.values()].some((e) => e > tolerance) && (!bestFull || worst < bestFull.mismatch))
          bestFull = { name: entry.name, side, mismatch: worst, detail: candidate.detail, parameters: [...theirs.keys()] };
      }
      if (bestFull) full.push(twinNote && (entry.name === 'l2-gradient-lambda-w' || entry.name === 'loss-gradient-not-divided') ? { ...bestFull, note: twinNote } : bestFull);
      else partial.push(...bestPartial.values());
    }
    full.sort((a, b) => a.mismatch - b.mismatch);
    partial.sort((a, b) => a.mismatch - b.mismatch);
    for (const a of wrong) a.causes.push(...full.map((m) => m.name));
    sides.push({ side, given: reports.length, wrong: wrong.length, verdict: 'wrong', causes: full, partial: full.length ? [] : partial });
  }

  // Their checker's verdicts.
  const relerr: RelerrReport[] = [];
  const bad: string[] = [];
  for (const [name, reported] of sub.relerr) {
    const a = arrayReports.find((r) => r.side === 'analytic' && r.parameter === name);
    const n = arrayReports.find((r) => r.side === 'numeric' && r.parameter === name);
    if (!a || !n) {
      relerr.push({ parameter: name, reported, verdict: 'right', note: `not judged: needs ${name} and num_${name}` });
      continue;
    }
    const bothRight = a.verdict === 'right' && n.verdict === 'right';
    const wrong = bothRight && reported > RELERR_LIMIT;
    if (wrong) bad.push(name);
    relerr.push({
      parameter: name, reported, verdict: wrong ? 'wrong' : 'right',
      note: bothRight
        ? wrong
          ? 'your check fails a parameter whose analytic and numeric gradients are both right'
          : 'agrees: both arrays are right'
        : reported > RELERR_LIMIT
          ? 'agrees: the parameter is wrong'
          : 'your check passes it, but the arrays are wrong (see above)',
    });
  }
  if (relerr.length) {
    const ctx = {
      lab, convention: setting, h: sub.h, side: 'analytic', theirs: analytic, raw: [], exact, exclude: kinkMasks, error: new Map(), matchTolerance,
      analytic, numeric, relerr: new Map([...sub.relerr].filter(([name]) => bad.includes(name))),
    } satisfies MatchContext;
    const causes = bad.length ? CATALOGUE.filter((e) => e.sides.includes('check') && e.applies(lab.c.config) && e.match).map((e) => e.match!(ctx)).filter((m): m is CauseMatch => m !== null) : [];
    sides.push({ side: 'check', given: relerr.length, wrong: bad.length, verdict: bad.length ? 'wrong' : 'right', causes, partial: [] });
  }

  const layouts = [...new Set(resolved.map((r) => r.layout).filter((l): l is Layout => l === 'row-sample' || l === 'column-sample'))];
  const transposedNames = new Set(resolved.filter((r) => r.layout === 'column-sample' && r.spec?.kind === 'W').map((r) => r.spec!.name));
  const transposed = specs.filter((s) => transposedNames.has(s.name)).map((s) => s.name);
  // Table order: analytic before numeric, then the case's parameter order; arrays fitting no parameter last.
  const order = (a: ArrayReport) => (a.side === 'analytic' ? 0 : 1) * 1000 + (a.parameter === null ? 999 : specs.findIndex((s) => s.name === a.parameter));
  arrayReports.sort((a, b) => order(a) - order(b));
  const notes: string[] = [];
  if (shifted.size) notes.push(`your ${[...shifted].join(' and ')} arrays do not all fit the shapes of their names: see layer-index-off-by-one`);
  const numericGiven = given('numeric');
  const notGiven = numeric.size ? specs.filter((s) => !numericGiven.has(s.name)).map((s) => `num_${s.name}`) : [];
  const passed = arrayReports.every((a) => a.verdict === 'right') && relerr.every((r) => r.verdict === 'right');
  const config = lab.c.config;
  return {
    format: 'bnmlp-diagnosis',
    version: 1,
    passed,
    case: { file: files.case, summary: caseSummary(lab), cost: lab.c.cost },
    theirs: {
      file: source,
      layouts:
        layouts.length === 0
          ? 'vectors only'
          : `${layouts.join(' and ')}${transposed.length ? ` (transposed W recognised: your ${transposed.join(', ')}${hasNumeric ? ' (and num_*)' : ''} are dOut×dIn, the column-sample layout of the DD2424 course)` : ''}`,
      h: sub.h,
      ignored: sub.ignored,
      notGiven,
    },
    rule: {
      tolerance,
      matchTolerance,
      text: [
        `an array is right when every entry has |yours − exact| ≤ ${fmt(tolerance)} × scale (scale: the parameter's largest |exact| entry, at least 1 % of the network's largest)`,
        `a cause matches when every array you gave on that side agrees with its variant within ${fmt(matchTolerance)} × scale (and the variant explains your error)`,
        ...(hasNumeric && lab.entries !== undefined
          ? [`a large case (${lab.totalEntries} parameters): finite differences (kinks, numeric causes) on ${SAMPLED_ENTRIES} evenly spaced entries per parameter`]
          : []),
        ...(hasNumeric ? [`numeric entries whose ±h step flips a ReLU are left out (at ${sub.h === null ? `h = ${fmt(KINK_STEP_UNKNOWN_H)}: put your step in the file as h` : `your h = ${fmt(sub.h)}`})`] : []),
        `exact: float64 (@bnmlp/reference's formulas)${config.batchNorm ? ', batch statistics recomputed for every evaluation' : ''}`,
      ],
    },
    convention,
    arrays: arrayReports,
    relerr,
    sides,
    notes,
  };
}
