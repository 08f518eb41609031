import { parseArgs } from 'node:util';
import { CliArgumentError, quote } from './errors.js';

/** One command-line flag: parsing and --help are both generated from these. */
export interface FlagSpec {
  /** Without the dashes: 'max-entries'. */
  readonly flag: string;
  readonly short?: string;
  /** The value's placeholder ('<d>'); absent for a boolean flag. */
  readonly value?: string;
  readonly help: string;
  /** Shown as "(default: …)". */
  readonly default?: string;
}

/** Lines longer than this put "(default: …)" on a line of its own. */
const HELP_WIDTH = 100;

export function formatFlags(specs: readonly FlagSpec[]): string {
  const left = specs.map((s) => `${s.short ? `-${s.short}, ` : '    '}--${s.flag}${s.value ? ` ${s.value}` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 4;
  return specs
    .map((s, i) => {
      const line = `  ${left[i].padEnd(width)}${s.help}`;
      if (s.default === undefined) return line;
      const withDefault = `${line} (default: ${s.default})`;
      return withDefault.length <= HELP_WIDTH ? withDefault : `${line}\n${' '.repeat(width + 2)}(default: ${s.default})`;
    })
    .join('\n');
}

/** A number as a user would type it: 1e-6 rather than 0.000001. */
export function formatNumber(value: number): string {
  return value !== 0 && Math.abs(value) < 1e-3 ? value.toExponential() : String(value);
}

export interface ParsedFlags {
  /** By flag name; strings for valued flags, true for boolean ones; absent when not given. */
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
}

/** node:util parseArgs (strict, no positionals), with its errors turned into CliArgumentError. */
export function parseFlags(op: string, args: readonly string[], specs: readonly FlagSpec[]): ParsedFlags {
  const options = Object.fromEntries(
    specs.map((s) => [s.flag, { type: s.value ? ('string' as const) : ('boolean' as const), ...(s.short ? { short: s.short } : {}) }]),
  );
  try {
    const { values } = parseArgs({ args: [...args], options, strict: true, allowPositionals: false });
    return { values: values as Record<string, string | boolean | undefined> };
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = (error as Error).message;
    const named = /'(-{1,2}[^' =]+)/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION')
      throw new CliArgumentError(op, named ?? 'option', `one of the options in \`${op} --help\``, 'an unknown option');
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const flag = named ?? 'option';
      if (message.includes('does not take an argument')) throw new CliArgumentError(op, flag, 'given without a value', 'a value');
      if (message.includes('ambiguous'))
        throw new CliArgumentError(op, flag, `followed by a value (write ${flag}=<value> for one that starts with '-')`, "an argument starting with '-'");
      throw new CliArgumentError(op, flag, 'followed by a value', 'nothing');
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
      throw new CliArgumentError(op, 'arguments', 'options only (this command takes no positional arguments)', quote(/'([^']*)'/.exec(message)?.[1] ?? message));
    throw error;
  }
}
