import { CliArgumentError } from '../errors.js';

/**
 * A case or gradient file that cannot be used: unreadable, another format or version, a missing
 * parameter, a wrong shape, NaN entries. The message names the file and the parameter. A usage
 * error (exit status 2, with a pointer to `bnmlp diagnose --help`, which states the file layout).
 */
export class DiagnoseInputError extends CliArgumentError {
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super('bnmlp diagnose', file, 'usable', problem);
    this.message = `bnmlp diagnose: ${file}: ${problem}`;
  }
}
