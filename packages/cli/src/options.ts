import { Command, CommanderError, Option } from 'commander';
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
  /** Positional arguments, in order. */
  readonly positionals: readonly string[];
}

export interface PositionalSpec {
  /** As --help shows it: 'RUN_DIR...'. */
  readonly name: string;
  readonly min: number;
  /** Infinity for a variadic list. */
  readonly max: number;
}

/** commander's message without its "error: " prefix, and its "(Did you mean …?)" hint when it has one. */
function suggestion(message: string): string {
  const hint = /\(Did you mean ([^)]*)\?\)/.exec(message)?.[1];
  return hint ? ` (did you mean ${hint}?)` : '';
}

/**
 * Parses a command's arguments with commander (typed options from the specs, "did you mean" on
 * typos), strictly: unknown options, missing values, a value for a boolean flag, and positionals
 * beyond `positionals` are usage errors (CliArgumentError naming the option). A value that starts
 * with '-' is taken as the value of the option before it (`--lambda -1` is judged by the command).
 */
export function parseFlags(op: string, args: readonly string[], specs: readonly FlagSpec[], positionals: PositionalSpec | null = null): ParsedFlags {
  const program = new Command(op)
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} })
    .helpOption(false)
    .showSuggestionAfterError(true)
    .allowExcessArguments(true);
  for (const s of specs) program.addOption(new Option(`${s.short ? `-${s.short}, ` : ''}--${s.flag}${s.value ? ` ${s.value.replace(/^<?/, '<').replace(/>?$/, '>')}` : ''}`, s.help));
  if (positionals) program.argument(`[${positionals.name.replace(/\.\.\.$/, '')}...]`);
  let operands: string[] = [];
  program.action((...actionArgs: unknown[]) => {
    operands = positionals ? ((actionArgs[0] as string[] | undefined) ?? []) : [...program.args];
  });
  // A boolean flag written with a value (--json=yes) is an unknown option to commander: name it as ours.
  for (const arg of args) {
    const [name] = arg.split('=');
    const spec = specs.find((s) => `--${s.flag}` === name);
    if (spec && !spec.value && arg.includes('=')) throw new CliArgumentError(op, name, 'given without a value', 'a value');
  }
  try {
    program.parse([...args], { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    const named = /'(-{1,2}[^' =]+)/.exec(error.message)?.[1] ?? 'option';
    switch (error.code) {
      case 'commander.unknownOption':
        throw new CliArgumentError(op, named, `one of the options in \`${op} --help\`${suggestion(error.message)}`, 'an unknown option');
      case 'commander.optionMissingArgument':
        throw new CliArgumentError(op, named, 'followed by a value', 'nothing');
      default:
        throw new CliArgumentError(op, 'arguments', 'valid', error.message.replace(/^error: /, ''));
    }
  }
  if (!positionals && operands.length > 0)
    throw new CliArgumentError(op, 'arguments', 'options only (this command takes no positional arguments)', quote(operands[0]));
  if (positionals && operands.length < positionals.min)
    throw new CliArgumentError(op, positionals.name, positionals.min === 1 ? 'given' : `given at least ${positionals.min} times`, operands.length === 0 ? 'nothing' : `${operands.length}`);
  if (positionals && operands.length > positionals.max)
    throw new CliArgumentError(op, 'arguments', `at most ${positionals.max} ${positionals.name}`, quote(operands.slice(positionals.max).join(' ')));
  const values: Record<string, string | boolean | undefined> = {};
  const parsed = program.opts() as Record<string, string | boolean | undefined>;
  for (const s of specs) values[s.flag] = parsed[camel(s.flag)];
  return { values, positionals: operands };
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
