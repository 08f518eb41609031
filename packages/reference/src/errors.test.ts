import { describe, expect, it } from 'vitest';
import { describeValue, ReferenceArgumentError } from './errors.js';

describe('ReferenceArgumentError', () => {
  it('keeps op, argument, expected and actual as fields and in the message', () => {
    const error = new ReferenceArgumentError('forward', 'X', 'a matrix with 3 columns (inputDim)', '2x5');

    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('ReferenceArgumentError');
    expect(error).toMatchObject({ op: 'forward', argument: 'X', expected: 'a matrix with 3 columns (inputDim)', actual: '2x5' });
    expect(error.message).toBe("forward: argument 'X' must be a matrix with 3 columns (inputDim), got 2x5");
  });
});

describe('describeValue', () => {
  it('shows numbers, booleans, null and undefined as themselves', () => {
    expect([describeValue(-1.5), describeValue(NaN), describeValue(true), describeValue(null), describeValue(undefined)]).toEqual(['-1.5', 'NaN', 'true', 'null', 'undefined']);
  });

  it('quotes strings (cutting long ones) so the message says which string was wrong', () => {
    expect(describeValue('big-endian')).toBe('"big-endian"');
    expect(describeValue('x'.repeat(100))).toBe(JSON.stringify(`${'x'.repeat(40)}…`));
  });

  it('shows the type and length of arrays and typed arrays, the type of anything else', () => {
    expect(describeValue(new Float64Array(3))).toBe('Float64Array(3)');
    expect(describeValue([1, 2])).toBe('array(2)');
    expect(describeValue({ a: 1 })).toBe('object');
  });
});
