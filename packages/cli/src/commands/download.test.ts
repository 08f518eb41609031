import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readCifarDirectory } from '@bnmlp/trainer';
import { runCli } from '../cli.js';
import type { CommandContext } from './command.js';
import { DOWNLOAD_FLAGS, shellQuote } from './download.js';

/*
The trainer's loopback server (packages/trainer/src/test-support/cifar-http-server.ts): vitest
compiles that .ts file of another package on import, so nothing needs building. It is imported by
a computed specifier so that this package's typecheck (rootDir src) does not take it in; the part
of its interface used here is restated below.
*/
interface CifarHttpServer {
  readonly origin: string;
  readonly url: string;
  readonly requests: Array<{ readonly range: string | null; readonly status: number }>;
  behaviour: { slow?: { chunkBytes: number; intervalMs: number } };
  close(): Promise<void>;
}
interface CifarHttpServerModule {
  startCifarHttpServer(archive: Uint8Array): Promise<CifarHttpServer>;
  craftTarGz(entries: ReadonlyArray<{ path: string; type?: 'File' | 'Directory'; body?: Uint8Array }>): Buffer;
  batchBytes(records: number, seed: number): Buffer;
}
const SERVER_MODULE = '../../../trainer/src/test-support/cifar-http-server.js';
const { batchBytes, craftTarGz, startCifarHttpServer } = (await import(SERVER_MODULE)) as CifarHttpServerModule;

const BATCHES = 'cifar-10-batches-bin';
const CLASS_NAMES = 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n';

/** `records` CIFAR records with labels < 10 and pseudo-random pixels (so gzip leaves them ~as large). */

const archive = craftTarGz([
  { path: `${BATCHES}/`, type: 'Directory' },
  { path: `${BATCHES}/data_batch_1.bin`, body: batchBytes(20, 1) },
  { path: `${BATCHES}/test_batch.bin`, body: batchBytes(4, 7) },
  { path: `${BATCHES}/batches.meta.txt`, body: Buffer.from(CLASS_NAMES) },
]);
const archiveMd5 = createHash('md5').update(archive).digest('hex');

let server: CifarHttpServer;
let root: string;

beforeAll(async () => {
  server = await startCifarHttpServer(archive);
});
afterAll(async () => {
  await server?.close();
});
beforeEach(() => {
  server.behaviour = {};
  server.requests.length = 0;
  root = mkdtempSync(join(tmpdir(), 'bnmlp-cli-download-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

async function run(args: string[], extra: Partial<CommandContext> = {}) {
  const out = { stdout: '', stderr: '' };
  const status = await runCli(['download', ...args], {
    stdout: (t) => void (out.stdout += t),
    stderr: (t) => void (out.stderr += t),
    env: {},
    cwd: root,
    ...extra,
  });
  return { status, ...out };
}

/** --dir, --url and --md5 for the loopback server's archive. */
const local = (dir: string) => ['--dir', dir, '--url', server.url, '--md5', archiveMd5];

describe('bnmlp download', () => {
  it('downloads, checks and extracts into --dir, with a few plain progress lines, and says how to use the data', async () => {
    const cache = join(root, 'cache');
    const { status, stdout, stderr } = await run(local(cache));
    expect([status, stderr]).toEqual([0, '']);
    const dir = join(cache, BATCHES);
    expect(readCifarDirectory(dir).train.count).toBe(20);
    expect(readdirSync(cache).sort()).toEqual(['cifar-10-batches-bin', 'cifar-10-binary.tar.gz']);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`downloading ${server.url} (${(archive.length / 1e6).toFixed(1)} MB) into ${cache}`);
    expect(lines).toContain('checking the md5');
    expect(lines).toContain('extracting');
    expect(lines.length).toBeLessThanOrEqual(10);
    expect(stdout).toContain(`downloaded, checked (md5 ${archiveMd5}) and extracted to ${dir}`);
    expect(stdout).toContain(`bnmlp train --data ${dir}`);
    expect(stdout).toContain(`export BNMLP_DATA=${cache}`);
    expect(server.requests).toHaveLength(1);
  });

  it('a second call finds the data in the cache and requests nothing', async () => {
    const cache = join(root, 'cache');
    expect((await run(local(cache))).status).toBe(0);
    server.requests.length = 0;
    const again = await run(local(cache));
    expect(again.status).toBe(0);
    expect(again.stdout).toContain(`CIFAR-10 (binary) is already in ${join(cache, BATCHES)}: nothing downloaded (pass --force to download it again)`);
    expect(server.requests).toHaveLength(0);
    // --force downloads again.
    expect((await run([...local(cache), '--force', '--quiet'])).status).toBe(0);
    expect(server.requests).toHaveLength(1);
  });

  it('uses $BNMLP_DATA as the cache when --dir is not given, and then says every command finds it', async () => {
    const cache = join(root, 'env-cache');
    const { status, stdout } = await run(['--url', server.url, '--md5', archiveMd5, '-q'], { env: { BNMLP_DATA: cache } });
    expect(status).toBe(0);
    expect(existsSync(join(cache, BATCHES, 'data_batch_1.bin'))).toBe(true);
    expect(stdout).not.toContain('downloading');
    expect(stdout).toContain(`every command finds it ($BNMLP_DATA is ${cache})`);
    expect(stdout).not.toContain('export BNMLP_DATA');
  });

  it('--json prints one document (progress goes to stderr)', async () => {
    const cache = join(root, 'cache');
    const { status, stdout, stderr } = await run([...local(cache), '--json']);
    expect(status).toBe(0);
    const doc = JSON.parse(stdout);
    expect(doc).toMatchObject({
      format: 'bnmlp-download', version: 1, url: server.url, md5: archiveMd5, cacheDir: cache, dir: join(cache, BATCHES), cached: false,
      usage: { dataFlag: `--data ${join(cache, BATCHES)}`, env: `export BNMLP_DATA=${cache}`, envAlreadySet: false },
    });
    expect(stderr).toContain('downloading');
  });

  it('an md5 mismatch fails with exit 1, the message and a hint, and leaves no data', async () => {
    const cache = join(root, 'cache');
    const wrong = '0'.repeat(32);
    const { status, stdout, stderr } = await run(['--dir', cache, '--url', server.url, '--md5', wrong, '-q']);
    expect(status).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toMatch(new RegExp(`^bnmlp download: ${server.url.replace(/[.]/g, '\\.')}: md5 mismatch: expected ${wrong}, got ${archiveMd5}\\nhint: the file at that URL is not the expected archive`));
    expect(existsSync(join(cache, BATCHES))).toBe(false);
  });

  it('an HTTP error names the status and points at --url', async () => {
    const { status, stderr } = await run(['--dir', join(root, 'c'), '--url', `${server.origin}/nothing-here`, '-q']);
    expect(status).toBe(1);
    expect(stderr).toContain('HTTP 404');
    expect(stderr).toContain('hint: the server refused the archive (not found): check --url');
  });

  it('no network: exit 1 with the hint to copy the data and pass --data', async () => {
    // A port nobody listens on: take one from a server, then close it.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', () => resolve()));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const { status, stderr } = await run(['--dir', join(root, 'c'), '--url', `http://127.0.0.1:${port}/cifar-10-binary.tar.gz`, '-q']);
    expect(status).toBe(1);
    expect(stderr).toMatch(/^bnmlp download: http:\/\/127\.0\.0\.1:\d+\/cifar-10-binary\.tar\.gz: request failed: /);
    expect(stderr).toContain('hint: no internet? copy the extracted cifar-10-batches-bin from a machine that has it and pass --data <dir>');
  });

  it('Ctrl-C stops the transfer, keeps the .part, prints the same command to resume (exit 130); running it resumes', async () => {
    const cache = join(root, 'cache');
    server.behaviour = { slow: { chunkBytes: 2048, intervalMs: 15 } };
    const interrupt = new AbortController();
    let stdout = '';
    const args = [...local(cache), '--force'];
    const stopped = await run(args, {
      signal: interrupt.signal,
      stdout: (t) => {
        stdout += t;
        if (t.startsWith('downloading')) setTimeout(() => interrupt.abort(), 60);
      },
    });
    expect(stopped.status).toBe(130);
    const part = join(cache, 'cifar-10-binary.tar.gz.part');
    const kept = statSync(part).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(archive.length);
    expect(stopped.stderr).toBe(
      `bnmlp download: stopped; the partial download (${(kept / 1e6).toFixed(1)} MB) is kept in ${part}. Resume with:\n  bnmlp download --dir ${cache} --url ${server.url} --md5 ${archiveMd5}\n`,
    );
    expect(existsSync(join(cache, BATCHES))).toBe(false);

    server.behaviour = {};
    server.requests.length = 0;
    const resumed = await run(local(cache));
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain(`resuming ${server.url} at ${(kept / 1e6).toFixed(1)} of`);
    expect(server.requests.map((r) => [r.range, r.status])).toEqual([[`bytes=${kept}-`, 206]]);
    expect(readFileSync(join(cache, BATCHES, 'data_batch_1.bin'))).toEqual(batchBytes(20, 1));
    expect(stdout).toContain('downloading');
  });

  it('on a terminal draws a bar over megabytes (with an ETA) besides the stage lines', async () => {
    const drawn: string[] = [];
    const terminal = Object.assign(new Writable({ write: (chunk, _encoding, done) => void (drawn.push(String(chunk)), done()) }), { isTTY: true, columns: 120 });
    server.behaviour = { slow: { chunkBytes: 8192, intervalMs: 5 } };
    const { status, stdout } = await run(local(join(root, 'cache')), { terminal });
    expect(status).toBe(0);
    expect(drawn.join('')).toMatch(/download \|.*\| [\d.]+\/0\.1 MB {2}\| ETA/);
    expect(stdout).toContain('downloading');
    expect(stdout).not.toMatch(/^ {2}[\d.]+ of/m);
  });

  it.each([
    [['--md5', 'abc'], "option --md5 must be 32 hexadecimal digits, got 'abc'"],
    [['--url', 'ftp://example.org/x.tgz'], "option --url must be an http:// or https:// URL, got 'ftp://example.org/x.tgz'"],
    [['--url', 'not a url'], "option --url must be an http:// or https:// URL, got 'not a url'"],
    [['--dir'], 'option --dir must be followed by a value, got nothing'],
    [['--forse'], 'option --forse must be one of the options in `bnmlp download --help` (did you mean --force?)'],
    [['somewhere'], "argument 'arguments' must be options only"],
    [['--json=yes'], 'option --json must be given without a value'],
  ])('rejects %j with exit 2 and requests nothing', async (args, message) => {
    const { status, stdout, stderr } = await run(args);
    expect([status, stdout]).toEqual([2, '']);
    expect(stderr).toContain(message);
    expect(stderr).toContain('(see `bnmlp download --help`)');
    expect(server.requests).toHaveLength(0);
  });

  it('refuses a --dir that is a file', async () => {
    const file = join(root, 'file');
    writeFileSync(file, 'x');
    const { status, stderr } = await run(['--dir', file]);
    expect(status).toBe(2);
    expect(stderr).toContain(`option --dir must be a directory (or a path to create), got '${file}' (a file)`);
  });

  it('--help lists every flag with the real defaults', async () => {
    const { status, stdout } = await run(['--help']);
    expect(status).toBe(0);
    expect([...stdout.matchAll(/^ {2}(?:-\w, )? *--([\w-]+)/gm)].map((m) => m[1])).toEqual(DOWNLOAD_FLAGS.map((f) => f.flag));
    expect(stdout).toContain('(default: https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz)');
    expect(stdout).toContain('(default: c32a1d4ab5d03f1284b67883e8d87530)');
    expect(stdout).toContain('130 stopped by Ctrl-C (resumable)');
  });

  it('shellQuote leaves plain words alone and quotes the rest', () => {
    expect(shellQuote('/tmp/a-b_c.d')).toBe('/tmp/a-b_c.d');
    expect(shellQuote('http://x:1/a?b=c')).toBe("'http://x:1/a?b=c'");
    expect(shellQuote("it's")).toBe("'it'\\''s'");
  });
});
