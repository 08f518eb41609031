import { formatNumber } from '../options.js';
import { formatTable, type Align } from '../table.js';
import { catalogueEntry, type CauseMatch } from './catalogue.js';
import type { Diagnosis, EntryReport, SideReport } from './diagnosis.js';

const sci = (v: number, digits = 2) => (Number.isFinite(v) ? v.toExponential(digits) : '-');
const num = (v: number) => (Number.isFinite(v) ? v.toExponential(6) : '-');
const idx = (e: EntryReport) => `[${e.index.join(',')}]${e.theirIndex.join(',') !== e.index.join(',') ? ` (yours [${e.theirIndex.join(',')}])` : ''}`;

const SIDE_TITLE: Record<SideReport['side'], string> = {
  analytic: 'analytic side (your W1, b1, …)',
  numeric: 'numeric side (your num_W1, …)',
  check: "your checker's verdicts (relerr_*)",
};

function causeLines(m: CauseMatch, rank: number): string[] {
  const entry = catalogueEntry(m.name)!;
  const how = m.mismatch > 0 ? `, mismatch ${sci(m.mismatch)} × scale` : '';
  return [
    `  ${rank}. ${m.name}: ${entry.title}${m.detail ? ` (${m.detail})` : ''} — matches ${m.parameters.length === 1 ? m.parameters[0] : `all ${m.parameters.length}`}${how}`,
    `     why: ${entry.explanation}`,
    `     fix: ${entry.fix}`,
    ...(m.note ? [`     ${m.note}`] : []),
  ];
}

/** The diagnosis as `bnmlp diagnose check` prints it. */
export function formatDiagnosis(d: Diagnosis): string {
  const lines: string[] = [
    `bnmlp diagnose check: ${d.theirs.file} against the case ${d.case.file}`,
    `case:   ${d.case.summary}`,
    `yours:  ${d.arrays.filter((a) => a.side === 'analytic').length} analytic and ${d.arrays.filter((a) => a.side === 'numeric').length} numeric arrays` +
      `${d.theirs.h !== null ? ` (h = ${formatNumber(d.theirs.h)})` : ''}${d.relerr.length ? `, ${d.relerr.length} reported relative errors` : ''}; layout ${d.theirs.layouts}`,
  ];
  if (d.theirs.ignored.length) lines.push(`        ignored (not gradient names): ${d.theirs.ignored.join(', ')}`);
  if (d.theirs.notGiven.length) lines.push(`        numeric arrays not given: ${d.theirs.notGiven.join(', ')}`);
  lines.push(...d.rule.text.map((t, i) => `${i === 0 ? 'rule:' : '     '}   ${t}`));
  if (d.convention) {
    lines.push('convention (not a bug): your cost differs from the case\'s, consistently; every array is judged against the exact gradient of your cost:');
    lines.push(...d.convention.lines.map((l) => `        ${l}`));
  }
  lines.push('');
  const rows = d.arrays.map((a) => {
    const worst = a.worst;
    const verdict = a.verdict === 'right' ? (d.convention ? 'right (convention)' : 'right') : 'WRONG';
    return [
      a.name,
      a.side,
      a.layout === 'column-sample' && a.shape.length === 2 && a.shape[0] !== 1 && a.shape[1] !== 1 ? `${a.shape.join('×')} (transposed)` : a.shape.join('×'),
      verdict,
      sci(a.maxRelativeError),
      sci(a.maxScaledError),
      worst ? idx(worst) : a.note ?? '-',
      worst ? num(worst.theirs) : '',
      worst ? num(worst.exact) : '',
      a.causes.length ? a.causes.join(', ') : a.verdict === 'wrong' ? (a.note && !worst ? 'see below' : 'no known cause') : '',
    ];
  });
  const headers = ['array', 'side', 'shape', 'verdict', 'max rel err', 'err/scale', 'worst entry [ours]', 'yours', 'exact', 'causes'];
  const align: Align[] = ['left', 'left', 'left', 'left', 'right', 'right', 'left', 'right', 'right', 'left'];
  lines.push(formatTable(headers, rows, align));
  if (d.relerr.length) {
    lines.push('');
    lines.push(formatTable(['relerr', 'reported', 'verdict', ''], d.relerr.map((r) => [r.parameter, sci(r.reported), r.verdict === 'right' ? 'right' : 'WRONG', r.note]), ['left', 'right', 'left', 'left']));
  }
  for (const side of d.sides) {
    lines.push('');
    if (side.verdict === 'right') {
      lines.push(`${SIDE_TITLE[side.side]}: right (${side.given} of ${side.given})`);
      continue;
    }
    lines.push(`${SIDE_TITLE[side.side]}: WRONG (${side.wrong} of ${side.given})`);
    if (side.causes.length) {
      lines.push(`  known causes matching all of them, best first:`);
      side.causes.forEach((m, i) => lines.push(...causeLines(m, i + 1)));
      continue;
    }
    lines.push('  wrong, no known cause matches.');
    if (side.partial.length) {
      lines.push('  closest for single arrays (each explains that array only):');
      for (const m of side.partial) lines.push(`    ${m.parameters[0]}: ${m.name}${m.detail ? ` (${m.detail})` : ''}, mismatch ${sci(m.mismatch)} × scale`);
    }
    const worst = d.arrays.filter((a) => (side.side === 'check' ? false : a.side === side.side) && a.verdict === 'wrong' && a.worstEntries.length);
    if (worst.length) {
      lines.push('  worst entries:');
      for (const a of worst)
        for (const e of a.worstEntries) lines.push(`    ${a.name}${idx(e)}: yours ${num(e.theirs)}, exact ${num(e.exact)}, err ${sci(e.scaledError)} × scale, rel err ${sci(e.relativeError)}`);
    }
  }
  for (const note of d.notes) lines.push('', `note: ${note}`);
  lines.push('');
  if (d.passed) lines.push(`RIGHT: every array you gave is right${d.convention ? ` for your conventions (${d.convention.names.join(', ')})` : ''}.`);
  else {
    const summary = d.sides
      .filter((s) => s.verdict === 'wrong')
      .map((s) => `${s.side}: ${s.causes.length ? s.causes.map((c) => c.name).join(' or ') : 'no known cause matches'}`);
    lines.push(`WRONG: ${summary.join('; ') || 'see above'}.`);
  }
  return `${lines.join('\n')}\n`;
}
