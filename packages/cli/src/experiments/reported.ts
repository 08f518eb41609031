/*
The model report's own figures, shown beside ours. The report itself is not in this repository:
only its hyperparameters and its gradient-check finding (relative errors up to 1.0 between
analytic and numeric BN gradients) are known here, so every accuracy below is null and the
tables print "—" for it. Fill in `value` and `text` from the report to have them compared.
*/

export interface ReportedFigure {
  /** The figure as a number (a fraction for accuracies), or null when we do not have it. */
  readonly value: number | null;
  /** As the report states it. */
  readonly text: string;
}

const unknown: ReportedFigure = { value: null, text: '—' };

export const REPORTED = {
  gradcheckMaxRelativeError: { value: 1.0, text: 'up to 1.0 (BN layers, sign flips)' } as ReportedFigure,
  overfit: unknown,
  compareBnWith: unknown,
  compareBnWithout: unknown,
  lrSweep: {} as Readonly<Record<string, ReportedFigure>>,
  searchBestValidation: unknown,
  bestValidation: unknown,
  bestTest: unknown,
} as const;
