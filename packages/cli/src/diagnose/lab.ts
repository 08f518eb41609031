import { parameterSpecs, type DiagnoseCase, type ParameterSpec } from './case.js';
import { CORRECT, differences, gradients, type Differences, type DifferenceOptions, type Knobs, type ReferenceModule } from './model.js';

/*
Everything a diagnosis computes on one case, computed once: gradients under any switch setting
(model.ts) and finite differences at any step. Keyed by the settings, so the many variants of a
catalogue share work, and a test suite that diagnoses many files of one case computes each only once.
*/

/** Steps tried for h-dependent causes when the file does not say which step it used. */
export const COMMON_STEPS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8] as const;

/** Kinks are looked for at this step when the file does not give one (a superset of those at any smaller step). */
export const KINK_STEP_UNKNOWN_H = 1e-4;

/** Finite differences of cases larger than this (in entries) are evaluated on a sample of entries per parameter. */
export const FULL_DIFFERENCE_LIMIT = 20_000;
export const SAMPLED_ENTRIES = 64;

export interface ConventionSetting {
  readonly loss: 'mean' | 'sum';
  readonly penalty: 1 | 0.5;
  /** null: the case's ε. */
  readonly eps: number | null;
}

export const CASE_CONVENTION: ConventionSetting = { loss: 'mean', penalty: 1, eps: null };

/** The switches of a convention: J itself changes, and its gradient with it (consistently). */
export function conventionKnobs(c: ConventionSetting): Knobs {
  return { ...CORRECT, loss: c.loss, lossGradient: c.loss, penalty: c.penalty, l2Factor: 2 * c.penalty, eps: c.eps };
}

function key(value: unknown): string {
  return JSON.stringify(value);
}

export class CaseLab {
  readonly specs: ParameterSpec[];
  readonly totalEntries: number;
  private readonly gradientCache = new Map<string, Map<string, Float64Array>>();
  private readonly differenceCache = new Map<string, Differences>();
  /** Entries evaluated by finite differences, per parameter (all, unless the case is large). */
  readonly entries: ReadonlyMap<string, readonly number[]> | undefined;
  private scales: Map<string, number> | null = null;

  constructor(
    readonly ref: ReferenceModule,
    readonly c: DiagnoseCase,
  ) {
    this.specs = parameterSpecs(c.config);
    const sizes = this.specs.map((s) => s.shape.reduce((a, b) => a * b, 1));
    this.totalEntries = sizes.reduce((a, b) => a + b, 0);
    if (this.totalEntries > FULL_DIFFERENCE_LIMIT) {
      // Evenly spaced entries per parameter (always including the first and last).
      this.entries = new Map(
        this.specs.map((s, i) => {
          const n = sizes[i];
          const m = Math.min(n, SAMPLED_ENTRIES);
          return [s.name, [...new Set(Array.from({ length: m }, (_, k) => Math.round((k * (n - 1)) / Math.max(1, m - 1))))]];
        }),
      );
    }
  }

  gradients(knobs: Knobs = CORRECT): Map<string, Float64Array> {
    const k = key(knobs);
    let found = this.gradientCache.get(k);
    if (!found) {
      found = gradients(this.ref, this.c.net, this.c.x, this.c.labels, this.c.config.lambda, knobs);
      this.gradientCache.set(k, found);
    }
    return found;
  }

  differences(options: DifferenceOptions): Differences {
    const k = key({ h: options.h, knobs: options.knobs ?? CORRECT, float32: options.float32 ?? false });
    let found = this.differenceCache.get(k);
    if (!found) {
      found = differences(this.ref, this.c.net, this.c.x, this.c.labels, this.c.config.lambda, { ...options, entries: options.entries ?? this.entries });
      this.differenceCache.set(k, found);
    }
    return found;
  }

  /**
   * A parameter's scale: its largest |exact entry|, and at least 1 % of the network's largest
   * (the bias before BN, exactly 0, is judged against that). Errors are measured in these units.
   */
  scale(name: string): number {
    if (!this.scales) {
      const exact = this.gradients();
      const maxima = new Map(this.specs.map((s) => [s.name, maxAbs(exact.get(s.name)!)]));
      const global = Math.max(...maxima.values(), 1e-300);
      this.scales = new Map(this.specs.map((s) => [s.name, Math.max(maxima.get(s.name)!, 0.01 * global)]));
    }
    return this.scales.get(name) ?? NaN;
  }
}

export function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}
