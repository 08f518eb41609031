import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { cliRoot } from './paths.js';

/**
 * Compiles the CLI from the current sources into a scratch directory inside node_modules (so
 * @bnmlp/* still resolve), never into dist/, which a concurrent build may be writing. Each test
 * file passes its own name, so files running in parallel never share a directory.
 */
export function buildBin(name: string): string {
  const outDir = join(cliRoot, 'node_modules', '.cache', name);
  rmSync(outDir, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const build = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir], { cwd: cliRoot, encoding: 'utf8' });
  if (build.status !== 0) throw new Error(`tsc failed:\n${build.stdout}${build.stderr}`);
  return join(outDir, 'bin.js');
}

export interface BinResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built binary to the end (stdout/stderr are pipes: not a terminal). */
export function runBin(bin: string, args: readonly string[], options: { env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number } = {}): BinResult {
  const result = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8', cwd: options.cwd, env: { ...process.env, ...options.env }, timeout: options.timeoutMs ?? 180_000,
  });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/** Starts the binary and sends SIGINT once stdout matches `when`; resolves when it exits. */
export function interruptBin(bin: string, args: readonly string[], when: RegExp, options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<BinResult & { interrupted: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (!interrupted && when.test(stdout)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, interrupted });
    });
  });
}
