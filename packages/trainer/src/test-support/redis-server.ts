import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/*
A real redis-server (the Debian package's binary) for tests: on a free loopback port, with its
own temporary directory (where appendonly files go), optionally with a password and appendonly
persistence. It can be stopped and started again on the same port and directory (a Redis restart
mid-search), killed outright, and is removed with its directory by `stop()`.
*/

export const REDIS_SERVER_BIN = '/usr/bin/redis-server';

/** Whether the tests that need Redis can run here; they skip with a plain message otherwise. */
export function redisServerAvailable(): boolean {
  return existsSync(REDIS_SERVER_BIN);
}

export const REDIS_MISSING_MESSAGE = `${REDIS_SERVER_BIN} is not installed: skipping the queue tests (apt-get install redis-server; .ci/run installs it)`;

export interface RedisServerOptions {
  /** `--requirepass`: clients must AUTH with it. */
  readonly password?: string;
  /** `--appendonly yes` (fsync every second): the data survives a restart. */
  readonly appendonly?: boolean;
}

export interface RedisServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly dir: string;
  readonly password: string | null;
  /** redis://[:password@]127.0.0.1:port/0 */
  readonly url: string;
  /** The running server's pid, or null between a halt and a start. */
  pid(): number | null;
  /** Everything the server printed (its log goes to stdout). */
  output(): string;
  /** Stops the server (SIGTERM: with appendonly, the file is synced first) and waits for it to exit; the port and directory are kept for `start`. */
  halt(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and directory (after `halt`). */
  start(): Promise<void>;
  /** halt + start. */
  restart(): Promise<void>;
  /** Stops it for good and removes its directory. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1 (the OS picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const READY = /Ready to accept connections/;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

function launch(args: readonly string[], log: { text: string }): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let settled = false;
    const timer = setTimeout(() => fail(new Error(`redis-server did not become ready within ${START_TIMEOUT_MS} ms:\n${log.text.slice(-2000)}`)), START_TIMEOUT_MS);
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      log.text += chunk.toString('utf8');
      if (!settled && READY.test(log.text.slice(-4000))) {
        settled = true;
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('error', (error) => fail(error));
    child.on('exit', (code, signal) => fail(new Error(`redis-server exited (${code ?? signal}) before it was ready:\n${log.text.slice(-2000)}`)));
  });
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts redis-server on a free loopback port in a new temporary directory. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  if (!redisServerAvailable()) throw new Error(REDIS_MISSING_MESSAGE);
  const dir = mkdtempSync(join(tmpdir(), 'bnmlp-redis-'));
  const password = options.password ?? null;
  const log = { text: '' };
  let port = 0;
  let child: ChildProcess | null = null;
  const args = () => [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--logfile', '',
    '--appendonly', options.appendonly ? 'yes' : 'no', '--appendfsync', 'everysec',
    ...(password ? ['--requirepass', password] : []),
  ];
  // Another process may take the port between freePort() and the server's bind: try a few.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      child = await launch(args(), log);
      break;
    } catch (error) {
      if (attempt >= 4) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
    }
  }
  const halt = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const running = child;
    child = null;
    if (!running) return;
    running.kill(signal);
    const timer = setTimeout(() => running.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await waitForExit(running);
    clearTimeout(timer);
  };
  const start = async () => {
    if (child) return;
    // The port was ours: retry briefly while the old socket is released.
    for (let attempt = 0; ; attempt++) {
      try {
        child = await launch(args(), log);
        return;
      } catch (error) {
        if (attempt >= 20) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  return {
    host: '127.0.0.1',
    port,
    dir,
    password,
    url: `redis://${password ? `:${encodeURIComponent(password)}@` : ''}127.0.0.1:${port}/0`,
    pid: () => child?.pid ?? null,
    output: () => log.text,
    halt,
    start,
    restart: async () => {
      await halt();
      await start();
    },
    stop: async () => {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
