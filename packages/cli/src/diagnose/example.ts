import { array, scalar, transpose, type NamedValues } from './arrays.js';
import type { Simulated } from './catalogue.js';
import type { Layout } from './submission.js';

/**
 * A simulated answer (catalogue.ts `simulate`) as a user would save it: W1, b1, … and num_W1, …,
 * h, relerr_*, in the row-sample layout (W dIn×dOut, vectors of n) or the column-sample one
 * (W dOut×dIn, vectors as n×1 columns, as DD2424 MATLAB code keeps them).
 */
export function answerValues(sim: Simulated, layout: Layout, options: { readonly withH?: boolean } = {}): NamedValues {
  const out: NamedValues = new Map();
  const put = (prefix: string, arrays: Simulated['analytic'] | undefined) => {
    for (const [name, a] of arrays ?? []) {
      if (layout === 'row-sample') out.set(`${prefix}${name}`, array(a.shape, a.data));
      else if (a.shape.length === 2) out.set(`${prefix}${name}`, array([a.shape[1], a.shape[0]], transpose(a.shape[0], a.shape[1], a.data)));
      else out.set(`${prefix}${name}`, array([a.shape[0], 1], a.data));
    }
  };
  put('', sim.analytic);
  put('num_', sim.numeric);
  if (sim.h !== undefined && (options.withH ?? true)) out.set('h', scalar(sim.h));
  for (const [name, value] of sim.relerr ?? []) out.set(`relerr_${name}`, scalar(value));
  return out;
}
