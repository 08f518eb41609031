/**
 * Thrown when a public entry point of @bnmlp/trainer receives an argument it cannot use. The fields
 * name the operation, the argument, what was expected and what was received (the same shape as
 * @bnmlp/reference's ReferenceArgumentError), so callers can react without parsing the message.
 */
export class TrainerArgumentError extends Error {
  override readonly name: string = 'TrainerArgumentError';
  constructor(
    readonly op: string,
    readonly argument: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${op}: argument '${argument}' must be ${expected}, got ${actual}`);
  }
}

/**
 * A CIFAR-10 file (or buffer) that is not in the binary batch format. `file` is the path or the
 * caller's label for the buffer; `record` is the 0-based record index, or null when the problem
 * is not in one record (e.g. a byte length that is no whole number of records).
 */
export class CifarFormatError extends TrainerArgumentError {
  override readonly name: string = 'CifarFormatError';
  constructor(
    op: string,
    argument: string,
    expected: string,
    actual: string,
    readonly file: string,
    readonly record: number | null,
  ) {
    super(op, argument, expected, actual);
    this.message = `${op}: ${file}${record === null ? '' : `, record ${record}`}: ${argument} must be ${expected}, got ${actual}`;
  }
}
