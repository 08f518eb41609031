/**
 * Thrown by public entry points when an argument cannot be used. Fields name the operation,
 * the argument, the expectation and the actual value; hot loops never check.
 */
export class CoreArgumentError extends Error {
  override readonly name = 'CoreArgumentError';
  constructor(
    readonly op: string,
    readonly argument: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${op}: argument '${argument}' must be ${expected}, got ${actual}`);
  }
}

/** A requested backend could not be initialised; `cause` is the loader's error. */
export class BackendUnavailableError extends Error {
  override readonly name = 'BackendUnavailableError';
  constructor(
    readonly backend: string,
    readonly reason: string,
  ) {
    super(`backend '${backend}' is unavailable: ${reason}`);
  }
}

export function describeValue(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return String(value);
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Float32Array).length})`;
  if (Array.isArray(value)) return `array(${value.length})`;
  const shape = (value as { shape?: unknown }).shape;
  const dtype = (value as { dtype?: unknown }).dtype;
  if (Array.isArray(shape)) return `tensor ${dtype ?? ''}[${shape.join(',')}]`;
  return typeof value;
}
