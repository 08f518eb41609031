/**
 * Thrown when a public entry point receives an argument it cannot use. The fields name the
 * operation, the argument, what was expected and what was received, so callers (and test
 * failures) can say exactly what went wrong without parsing the message.
 */
export class ReferenceArgumentError extends Error {
  override readonly name = 'ReferenceArgumentError';
  constructor(
    readonly op: string,
    readonly argument: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${op}: argument '${argument}' must be ${expected}, got ${actual}`);
  }
}

export function describeValue(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  // Quoted (and cut short): "got string" would not say which string was wrong.
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null || value === undefined) return String(value);
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Float64Array).length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  return typeof value;
}
