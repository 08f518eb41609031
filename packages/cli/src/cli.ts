import { readFileSync } from 'node:fs';
import { Command as Commander, CommanderError } from 'commander';
import type { Command, CommandContext } from './commands/command.js';
import { benchCommand } from './commands/bench.js';
import { diagnoseCommand } from './commands/diagnose.js';
import { downloadCommand } from './commands/download.js';
import { evaluateCommand } from './commands/evaluate.js';
import { gradcheckCommand } from './commands/gradcheck.js';
import { reportCommand } from './commands/report.js';
import { reproduceCommand } from './commands/reproduce.js';
import { searchCommand } from './commands/search.js';
import { compareBnCommand, lrSweepCommand, overfitCommand } from './commands/sections.js';
import { trainCommand } from './commands/train.js';
import { workerCommand } from './commands/worker.js';
import { CliArgumentError, quote } from './errors.js';
import { formatFlags, type FlagSpec } from './options.js';

/** Every command, in --help order. */
export const COMMANDS: readonly Command[] = [
  reproduceCommand, gradcheckCommand, overfitCommand, trainCommand, compareBnCommand, searchCommand, workerCommand, lrSweepCommand, evaluateCommand, diagnoseCommand, reportCommand, downloadCommand, benchCommand,
];

export const TOP_LEVEL_FLAGS: readonly FlagSpec[] = [
  { flag: 'help', short: 'h', help: 'show this help; `bnmlp <command> --help` (or `bnmlp help <command>`) for a command' },
  { flag: 'version', short: 'v', help: 'print the version' },
];

export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export function version(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

export function topLevelHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'Usage: bnmlp <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Options:',
    formatFlags(TOP_LEVEL_FLAGS),
    '',
    'Exit status: 0 success, 1 failure (a check failed or could not run), 2 usage error, 130 stopped by Ctrl-C',
    '(training commands write their checkpoint first and print the command that resumes).',
    '',
  ].join('\n');
}

/**
 * The command named `name`, found through commander (which also suggests the nearest command for a
 * typo); throws CliArgumentError with that suggestion when there is none.
 */
function findCommand(name: string): Command {
  const program = new Commander('bnmlp').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} }).showSuggestionAfterError(true);
  let found: Command | null = null;
  for (const command of COMMANDS)
    program.command(command.name).helpOption(false).allowUnknownOption().allowExcessArguments().action(() => {
      found = command;
    });
  try {
    program.parse([name], { from: 'user' });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    const hint = /\(Did you mean ([^)]*)\?\)/.exec(error.message)?.[1];
    throw new CliArgumentError('bnmlp', 'command', `one of ${COMMANDS.map((c) => quote(c.name)).join(', ')}${hint ? ` (did you mean ${hint}?)` : ''}`, quote(name));
  }
  return found!;
}

/**
 * The whole command line: dispatches argv (without node and the script) and returns the exit
 * status. Usage errors print the message and a pointer to --help on stderr (status 2); other
 * errors print `bnmlp: <message>` (status 1).
 */
export async function runCli(argv: readonly string[], context: CommandContext): Promise<number> {
  try {
    const [first, ...rest] = argv;
    if (first === undefined) {
      context.stderr(topLevelHelp());
      return EXIT.usage;
    }
    if (first === '--help' || first === '-h') {
      context.stdout(topLevelHelp());
      return EXIT.ok;
    }
    if (first === '--version' || first === '-v') {
      context.stdout(`${version()}\n`);
      return EXIT.ok;
    }
    if (first === 'help') {
      if (rest.length > 1) throw new CliArgumentError('bnmlp help', 'arguments', 'at most one command name', quote(rest.join(' ')));
      context.stdout(rest.length === 0 ? topLevelHelp() : findCommand(rest[0]).help());
      return EXIT.ok;
    }
    if (first.startsWith('-')) throw new CliArgumentError('bnmlp', first, 'a command, --help or --version first', 'an unknown option');
    return await findCommand(first).run(rest, context);
  } catch (error) {
    if (error instanceof CliArgumentError) {
      const helpFor = error.op.startsWith('bnmlp ') && error.op !== 'bnmlp help' ? `${error.op} --help` : 'bnmlp --help';
      context.stderr(`${error.message}\n(see \`${helpFor}\`)\n`);
      return EXIT.usage;
    }
    if (error instanceof Error) {
      context.stderr(`bnmlp: ${error.message}\n`);
      return EXIT.failure;
    }
    throw error;
  }
}
