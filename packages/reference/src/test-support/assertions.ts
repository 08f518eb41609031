import { expect } from 'vitest';
import { ReferenceArgumentError } from '../errors.js';

type ErrorFields = Partial<Pick<ReferenceArgumentError, 'op' | 'argument' | 'expected' | 'actual'>>;

/** `fn` throws a ReferenceArgumentError whose fields include `fields` (strings compared exactly). */
export function expectArgumentError(fn: () => unknown, fields: ErrorFields): ReferenceArgumentError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(ReferenceArgumentError);
  expect(caught).toMatchObject(fields);
  return caught as ReferenceArgumentError;
}

/** Largest |a − b| over two equal-length arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

export function expectAllFinite(values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) expect.fail(`entry ${i} is ${values[i]}`);
}
