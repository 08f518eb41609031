import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runGradcheck, type GradcheckReport } from '../commands/gradcheck.js';
import type { SectionOptions, SectionResult } from './sections.js';
import { REPORTED } from './reported.js';

const sci = (x: number) => (x === 0 ? '0' : x.toExponential(1));

/**
 * The report's gradient check, done right: centered differences with batch statistics recomputed
 * per perturbation (the report's numeric gradients used running statistics and disagreed by up to
 * 1.0). One row per network, its worst parameter.
 */
export async function gradcheckSection(options: SectionOptions): Promise<SectionResult> {
  const report: GradcheckReport = await runGradcheck({ data: options.settings.data.dir }, {});
  writeFileSync(join(options.dir, 'gradcheck.json'), `${JSON.stringify(report, null, 2)}\n`);
  const rows = report.configurations.map((c) => {
    const worst = c.parameters.reduce((a, b) => (b.maxRelativeError > a.maxRelativeError ? b : a));
    return [c.label, c.parameters.length, sci(worst.maxRelativeError), worst.name, c.passed ? 'PASS' : 'FAIL'];
  });
  const maxError = Math.max(...report.configurations.flatMap((c) => c.parameters.map((p) => p.maxRelativeError)));
  return {
    id: 'gradcheck', title: 'Gradient check', dir: options.dir,
    paragraphs: [
      `Analytic gradients of the float64 reference against centered differences (h = ${report.options.step}), every entry, on the first ${report.options.batch} training images reduced to ${report.options.dims} features, for ${report.options.layers.join('/')}-layer networks with and without BN and λ ∈ {0, ${report.options.lambda}}. Batch statistics are recomputed for every perturbation and running averages are never touched; entries whose perturbation crosses a ReLU kink are skipped and counted; the bias before BN (true gradient exactly 0) is judged against an absolute floor.`,
      `Data: ${report.data.description}.`,
    ],
    tables: [{ caption: 'Worst relative error per network', columns: ['network', 'parameters', 'max rel err', 'worst parameter', 'result'], rows }],
    figures: [],
    comparisons: [{ section: 'gradcheck', measure: 'largest relative error, analytic vs numeric', ours: sci(maxError), report: REPORTED.gradcheckMaxRelativeError.text, note: report.passed ? 'every parameter passes at 1e-6' : 'some parameter fails' }],
    runs: [],
    status: report.passed ? 'completed' : 'failed',
  };
}
