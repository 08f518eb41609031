import { expect } from 'vitest';
import { CoreArgumentError } from '../errors.js';

type ErrorFields = Partial<Pick<CoreArgumentError, 'op' | 'argument' | 'expected' | 'actual'>>;

/** `fn` throws a CoreArgumentError whose fields include `fields` (compared exactly) and whose message is built from them. */
export function expectCoreArgumentError(fn: () => unknown, fields: ErrorFields): CoreArgumentError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  return checkCoreArgumentError(caught, fields);
}

/** The async twin (initBackend). */
export async function expectCoreArgumentErrorAsync(fn: () => Promise<unknown>, fields: ErrorFields): Promise<CoreArgumentError> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  return checkCoreArgumentError(caught, fields);
}

function checkCoreArgumentError(caught: unknown, fields: ErrorFields): CoreArgumentError {
  expect(caught, `expected a CoreArgumentError with ${JSON.stringify(fields)}`).toBeInstanceOf(CoreArgumentError);
  const error = caught as CoreArgumentError;
  expect({ op: error.op, argument: error.argument, expected: error.expected, actual: error.actual }).toMatchObject(fields);
  expect(error.message).toBe(`${error.op}: argument '${error.argument}' must be ${error.expected}, got ${error.actual}`);
  return error;
}

/** Every entry is finite (names the first that is not). */
export function expectAllFinite(label: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) expect.fail(`${label}: entry ${i} is ${values[i]}`);
}
