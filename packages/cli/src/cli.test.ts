import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS, TOP_LEVEL_FLAGS, runCli, topLevelHelp } from './cli.js';
import { DEFAULT_GRADCHECK_OPTIONS, GRADCHECK_FLAGS } from './commands/gradcheck.js';
import { cliRoot, tinyCifarDir } from './test-support/paths.js';

async function run(argv: string[]) {
  const out = { stdout: '', stderr: '' };
  const status = await runCli(argv, { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t) });
  return { status, ...out };
}

describe('bnmlp', () => {
  it('--help lists every command and top-level option', async () => {
    const { status, stdout, stderr } = await run(['--help']);
    expect(status).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toBe(topLevelHelp());
    expect(COMMANDS.map((c) => c.name)).toEqual(['reproduce', 'gradcheck', 'overfit', 'train', 'compare-bn', 'search', 'worker', 'lr-sweep', 'evaluate', 'diagnose', 'report', 'download', 'bench']);
    const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    for (const command of COMMANDS) expect(stdout).toMatch(new RegExp(`^  ${escape(command.name)} +${escape(command.summary)}$`, 'm'));
    for (const flag of TOP_LEVEL_FLAGS) expect(stdout).toContain(`-${flag.short}, --${flag.flag}`);
    expect((await run(['-h'])).stdout).toBe(stdout);
    expect((await run(['help'])).stdout).toBe(stdout);
  });

  it('--version prints the package version', async () => {
    const manifest = JSON.parse(readFileSync(join(cliRoot, 'package.json'), 'utf8'));
    expect(await run(['--version'])).toEqual({ status: 0, stdout: `${manifest.version}\n`, stderr: '' });
  });

  it('without a command prints the help on stderr and exits 2', async () => {
    const { status, stdout, stderr } = await run([]);
    expect([status, stdout]).toEqual([2, '']);
    expect(stderr).toBe(topLevelHelp());
  });

  it('rejects an unknown command or option with status 2', async () => {
    const unknown = await run(['fit']);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/^bnmlp: argument 'command' must be one of 'reproduce', 'gradcheck', .*'bench', got 'fit'\n\(see `bnmlp --help`\)\n$/);
    const option = await run(['--verbose']);
    expect(option.status).toBe(2);
    expect(option.stderr).toContain('option --verbose must be a command, --help or --version first');
    expect((await run(['help', 'nope'])).status).toBe(2);
    const typo = await run(['gradchek']);
    expect(typo.status).toBe(2);
    expect(typo.stderr).toContain('(did you mean gradcheck?)');
  });
});

describe('bnmlp gradcheck --help', () => {
  it('is the same text as `bnmlp help gradcheck`, and lists every flag the parser accepts with its real default', async () => {
    const { status, stdout } = await run(['gradcheck', '--help']);
    expect(status).toBe(0);
    expect((await run(['help', 'gradcheck'])).stdout).toBe(stdout);
    expect((await run(['gradcheck', '-h'])).stdout).toBe(stdout);
    const shown = [...stdout.matchAll(/^ {2}(?:-\w, )? *--([\w-]+)/gm)].map((m) => m[1]);
    expect(shown).toEqual(GRADCHECK_FLAGS.map((f) => f.flag));
    const defaults: Record<string, string> = {
      dims: '20', batch: '10', hidden: '50', layers: '2,3,4', lambda: '0.01', seed: '1',
      mode: 'entries', directions: '4', 'max-entries': 'every entry', step: '1e-6, either stencil', tolerance: '1e-6 (--stencil 2), 1e-9 (--stencil 4)',
    };
    expect(DEFAULT_GRADCHECK_OPTIONS).toMatchObject({ dims: 20, batch: 10, hidden: 50, layers: [2, 3, 4], lambda: 0.01, seed: 1, step: 1e-6, tolerance: 1e-6, maxEntries: null });
    const options = stdout.slice(stdout.indexOf('\nOptions:\n'));
    for (const [flag, value] of Object.entries(defaults)) {
      const block = options.slice(options.indexOf(`--${flag} `)).split(/\n(?= {2}(?:-\w, )? *--)/)[0];
      expect(block, flag).toContain(`(default: ${value})`);
    }
    expect(stdout).toContain('Exit status: 0 when every row passes, 1 when a row fails or the check cannot run, 2 for a usage error.');
  });

  it.each([
    [['--dims', '0'], "option --dims must be an integer in [1, 3072], got '0'"],
    [['--dims', 'abc'], "option --dims must be an integer in [1, 3072], got 'abc'"],
    [['--dims', '2.5'], "option --dims must be an integer in [1, 3072], got '2.5'"],
    [['--batch', '1'], "option --batch must be an integer >= 2 (batch norm needs 2 rows), got '1'"],
    [['--hidden', '0'], "option --hidden must be an integer >= 1, got '0'"],
    [['--layers', '2,,3'], "option --layers must be a comma-separated list of integers >= 1, got '2,,3'"],
    [['--lambda=-1'], "option --lambda must be a finite number >= 0, got '-1'"],
    [['--lambda', '-1'], "option --lambda must be a finite number >= 0, got '-1'"],
    [['--dimz', '3'], 'option --dimz must be one of the options in `bnmlp gradcheck --help` (did you mean --dims?), got an unknown option'],
    [['--step', '0'], "option --step must be a finite number > 0, got '0'"],
    [['--tolerance', 'Infinity'], "option --tolerance must be a finite number > 0, got 'Infinity'"],
    [['--seed', '4294967296'], "option --seed must be an integer in [0, 4294967295], got '4294967296'"],
    [['--mode', 'all'], "option --mode must be 'entries' or 'directional', got 'all'"],
    [['--max-entries', '0'], "option --max-entries must be an integer >= 1, got '0'"],
    [['--dims'], 'option --dims must be followed by a value, got nothing'],
    [['--json=yes'], 'option --json must be given without a value, got a value'],
    [['--verbose'], 'option --verbose must be one of the options in `bnmlp gradcheck --help`, got an unknown option'],
    [['extra'], "argument 'arguments' must be options only (this command takes no positional arguments), got 'extra'"],
    [['--data', '/nonexistent-bnmlp'], "option --data must be a CIFAR-10 directory (cifar-10-batches-bin, -py or -mat, or a folder holding one), got '/nonexistent-bnmlp'"],
    [['--data', tinyCifarDir, '--batch', '41'], `option --batch must be at most 40 (the training records in ${tinyCifarDir}), got 41`],
  ])('%j is a usage error (status 2) that names the option', async (args, message) => {
    const { status, stdout, stderr } = await run(['gradcheck', ...args]);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr.startsWith(`bnmlp gradcheck: ${message}`)).toBe(true);
    expect(stderr).toContain('(see `bnmlp gradcheck --help`)');
  });
});
