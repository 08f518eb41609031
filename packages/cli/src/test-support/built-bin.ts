import { spawn } from 'node:child_process';
import { inject } from 'vitest';

/** The CLI compiled from the current sources by the test run's global setup (global-setup.ts). */
export function builtBin(): string {
  return inject('bnmlpBin');
}

export interface BinResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface RunOptions {
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/**
 * Runs the built binary to the end (stdout/stderr are pipes: not a terminal). Asynchronous on
 * purpose: a spawnSync of a long command blocks the test worker's RPC with vitest (see
 * global-setup.ts).
 */
export function runBin(bin: string, args: readonly string[], options: RunOptions = {}): Promise<BinResult> {
  return startBin(bin, args, options, null).then(({ interrupted: _, ...result }) => result);
}

/** Starts the binary and sends SIGINT once stdout matches `when`; resolves when it exits. */
export function interruptBin(bin: string, args: readonly string[], when: RegExp, options: RunOptions = {}): Promise<BinResult & { interrupted: boolean }> {
  return startBin(bin, args, options, when);
}

function startBin(bin: string, args: readonly string[], options: RunOptions, interruptWhen: RegExp | null): Promise<BinResult & { interrupted: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (interruptWhen && !interrupted && interruptWhen.test(stdout)) {
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
