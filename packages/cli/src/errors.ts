/**
 * A command-line option (or, called from code, an option field) that cannot be used. `argument` is
 * the flag as typed (`--dims`) or the field name (`dims`); exits with status 2 (usage error).
 */
export class CliArgumentError extends Error {
  override readonly name = 'CliArgumentError';
  constructor(
    readonly op: string,
    readonly argument: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${op}: ${argument.startsWith('-') ? `option ${argument}` : `argument '${argument}'`} must be ${expected}, got ${actual}`);
  }
}

/** A module the command needs is not installed (or not built). Exits with status 1. */
export class CliDependencyError extends Error {
  override readonly name = 'CliDependencyError';
  constructor(
    readonly op: string,
    readonly dependency: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${op}: ${dependency} must be ${expected}, got ${actual}`);
  }
}

export function quote(text: string): string {
  return `'${text}'`;
}
