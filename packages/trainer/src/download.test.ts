import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CIFAR_RECORD_BYTES } from './cifar.js';
import {
  CIFAR_BINARY_MD5,
  CIFAR_BINARY_URL,
  DATA_DIR_ENV,
  DownloadError,
  defaultCacheDir,
  downloadCifar,
  type DownloadEvent,
  type DownloadOptions,
} from './download.js';
import { TrainerArgumentError } from './errors.js';
import { REDIRECT_PATH, batchBytes, craftTarGz, startCifarHttpServer, type CifarHttpServer, type TarEntrySpec } from './test-support/cifar-http-server.js';

const BATCHES = 'cifar-10-batches-bin';
const ARCHIVE = 'cifar-10-binary.tar.gz';
const PART = `${ARCHIVE}.part`;
const CLASS_NAMES = 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n';

const md5 = (bytes: Uint8Array) => createHash('md5').update(bytes).digest('hex');

/** `records` CIFAR records with labels < 10 and pseudo-random pixels (so gzip cannot shrink them much). */

const FILES: Record<string, Buffer> = {
  'data_batch_1.bin': batchBytes(3, 1),
  'test_batch.bin': batchBytes(2, 7),
  'batches.meta.txt': Buffer.from(CLASS_NAMES),
};
const goodEntries: TarEntrySpec[] = [
  { path: `${BATCHES}/`, type: 'Directory' },
  ...Object.entries(FILES).map(([name, body]) => ({ path: `${BATCHES}/${name}`, body })),
];

let workRoot: string;
let archive: Buffer;
let archiveMd5: string;
let server: CifarHttpServer;
/** Per test: <root>/cache is the cache dir; <root> itself is "outside" it, where sentinels go. */
let root: string;
let cacheDir: string;

beforeAll(async () => {
  workRoot = mkdtempSync(join(tmpdir(), 'bnmlp-download-'));
  const src = join(workRoot, 'src');
  mkdirSync(join(src, BATCHES), { recursive: true });
  for (const [name, bytes] of Object.entries(FILES)) writeFileSync(join(src, BATCHES, name), bytes);
  const file = join(workRoot, 'good.tar.gz');
  await tar.c({ gzip: true, portable: true, cwd: src, file }, [BATCHES]);
  archive = readFileSync(file);
  archiveMd5 = md5(archive);
  server = await startCifarHttpServer(archive);
});

afterAll(async () => {
  await server?.close();
  if (workRoot) rmSync(workRoot, { recursive: true, force: true });
});

beforeEach(() => {
  server.behaviour = {};
  server.archive = archive;
  server.requests.length = 0;
  root = mkdtempSync(join(workRoot, 'case-'));
  cacheDir = join(root, 'cache');
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function download(extra: Partial<DownloadOptions> = {}, events: DownloadEvent[] = []) {
  return downloadCifar({ url: server.url, md5: archiveMd5, cacheDir, onEvent: (e) => events.push(e), ...extra });
}

async function failure(promise: Promise<unknown>): Promise<DownloadError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DownloadError);
  return error as DownloadError;
}

/** Event kinds with consecutive progress events folded into one. */
function kinds(events: readonly DownloadEvent[]): string[] {
  return events.map((e) => e.kind).filter((kind, i, all) => kind !== 'progress' || all[i - 1] !== 'progress');
}

function cacheListing(): string[] {
  return existsSync(cacheDir) ? readdirSync(cacheDir).sort() : [];
}

function expectGoodData(dir: string): void {
  expect(dir).toBe(join(cacheDir, BATCHES));
  expect(readdirSync(dir).sort()).toEqual(Object.keys(FILES).sort());
  for (const [name, bytes] of Object.entries(FILES)) expect(readFileSync(join(dir, name)).equals(bytes)).toBe(true);
  expect(md5(readFileSync(join(cacheDir, ARCHIVE)))).toBe(archiveMd5);
  // Nothing else: no .part, no .extract-* directory.
  expect(cacheListing()).toEqual([BATCHES, ARCHIVE]);
}

describe('downloadCifar: the normal path', () => {
  it('downloads, verifies, extracts, reports events in order, then answers from the cache without a request', async () => {
    const events: DownloadEvent[] = [];
    const result = await download({}, events);
    expect(result).toEqual({ dir: join(cacheDir, BATCHES), cached: false, archive: join(cacheDir, ARCHIVE) });
    expectGoodData(result.dir);
    expect(kinds(events)).toEqual(['start', 'progress', 'verify', 'extract', 'done']);
    expect(events[0]).toEqual({ kind: 'start', url: server.url, totalBytes: archive.length, resumedFrom: 0 });
    expect(events.filter((e) => e.kind === 'progress').at(-1)).toEqual({ kind: 'progress', receivedBytes: archive.length, totalBytes: archive.length });
    expect(events.at(-1)).toEqual({ kind: 'done', dir: result.dir, cached: false });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]).toMatchObject({ range: null, acceptEncoding: 'identity', status: 200 });

    const again: DownloadEvent[] = [];
    const cached = await download({}, again);
    expect(cached).toEqual({ ...result, cached: true });
    expect(again).toEqual([{ kind: 'done', dir: result.dir, cached: true }]);
    expect(server.requests).toHaveLength(1);
  });

  it('creates a missing cache directory recursively and follows redirects', async () => {
    cacheDir = join(root, 'a', 'b', 'cache');
    const result = await download({ url: server.origin + REDIRECT_PATH });
    expectGoodData(result.dir);
    expect(server.requests.map((r) => r.status)).toEqual([302, 200]);
  });

  it('reuses a verified archive left by an interrupted extraction, without a request', async () => {
    mkdirSync(cacheDir);
    writeFileSync(join(cacheDir, ARCHIVE), archive);
    const events: DownloadEvent[] = [];
    const result = await download({}, events);
    expectGoodData(result.dir);
    expect(kinds(events)).toEqual(['verify', 'extract', 'done']);
    expect(server.requests).toHaveLength(0);
  });

  it('force downloads again and replaces the data', async () => {
    await download();
    writeFileSync(join(cacheDir, BATCHES, 'stale.txt'), 'old');
    const result = await download({ force: true });
    expect(result.cached).toBe(false);
    expectGoodData(result.dir);
    expect(server.requests).toHaveLength(2);
  });

  it('removes extraction directories of dead processes, not of live ones', async () => {
    mkdirSync(cacheDir);
    // Above Linux's largest pid (2^22), so no process has it.
    const dead = join(cacheDir, `.extract-${2 ** 22 + 1}-stale`);
    const live = join(cacheDir, `.extract-${process.pid}-busy`);
    for (const dir of [dead, live]) {
      mkdirSync(join(dir, BATCHES), { recursive: true });
      writeFileSync(join(dir, BATCHES, 'data_batch_1.bin'), 'partial');
    }
    await download();
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });

  it('refuses a cached directory that is not a CIFAR directory (reason layout), suggesting force', async () => {
    mkdirSync(join(cacheDir, BATCHES), { recursive: true });
    const error = await failure(download());
    expect(error.reason).toBe('layout');
    expect(error.path).toBe(join(cacheDir, BATCHES));
    expect(error.message).toContain('force');
    expect(server.requests).toHaveLength(0);
    expectGoodData((await download({ force: true })).dir);
  });

  it('throttles progress events (at most one per 100 ms, plus the last)', async () => {
    server.behaviour = { slow: { chunkBytes: 512, intervalMs: 5 } };
    const events: DownloadEvent[] = [];
    const started = performance.now();
    await download({}, events);
    const elapsed = performance.now() - started;
    const progress = events.filter((e) => e.kind === 'progress');
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 1);
    expect(progress.at(-1)).toMatchObject({ receivedBytes: archive.length });
  });
});

describe('downloadCifar: resuming', () => {
  it('resumes with a Range request after the connection is cut mid-transfer', async () => {
    server.behaviour = { cutFirstAfter: 5000 };
    const events: DownloadEvent[] = [];
    const result = await download({}, events);
    expectGoodData(result.dir);
    expect(server.requests.map((r) => [r.range, r.status])).toEqual([
      [null, 200],
      ['bytes=5000-', 206],
    ]);
    expect(kinds(events)).toEqual(['start', 'progress', 'retry', 'start', 'progress', 'verify', 'extract', 'done']);
    expect(events.find((e) => e.kind === 'retry')).toMatchObject({ attempt: 1 });
    expect(events.filter((e) => e.kind === 'start')[1]).toEqual({ kind: 'start', url: server.url, totalBytes: archive.length, resumedFrom: 5000 });
  });

  it('starts over cleanly when the server ignores Range', async () => {
    server.behaviour = { cutFirstAfter: 5000, ignoreRange: true };
    const events: DownloadEvent[] = [];
    const result = await download({}, events);
    expectGoodData(result.dir);
    expect(server.requests.map((r) => [r.range, r.status])).toEqual([
      [null, 200],
      ['bytes=5000-', 200],
    ]);
    expect(events.filter((e) => e.kind === 'start').map((e) => (e as { resumedFrom: number }).resumedFrom)).toEqual([0, 0]);
  });

  it('fails with reason network once the retries are spent', async () => {
    server.behaviour = { cutFirstAfter: 100 };
    const error = await failure(download({ retries: 0 }));
    expect(error.reason).toBe('network');
    expect(error.message).toContain('100 of');
    // The bytes that arrived are kept for the next call, which resumes.
    expect(statSync(join(cacheDir, PART)).size).toBe(100);
    expect(cacheListing()).toEqual([PART]);
    expectGoodData((await download()).dir);
    expect(server.requests.at(-1)).toMatchObject({ range: 'bytes=100-', status: 206 });
  });

  it('takes a complete .part answered with 416 once its md5 matches', async () => {
    mkdirSync(cacheDir);
    writeFileSync(join(cacheDir, PART), archive);
    const result = await download();
    expectGoodData(result.dir);
    expect(server.requests.map((r) => [r.range, r.status])).toEqual([[`bytes=${archive.length}-`, 416]]);
  });

  it('restarts once from scratch when a resumed archive fails its md5 check', async () => {
    mkdirSync(cacheDir);
    writeFileSync(join(cacheDir, PART), Buffer.alloc(1000, 0xab));
    const events: DownloadEvent[] = [];
    const result = await download({}, events);
    expectGoodData(result.dir);
    expect(server.requests.map((r) => [r.range, r.status])).toEqual([
      ['bytes=1000-', 206],
      [null, 200],
    ]);
    expect((events.find((e) => e.kind === 'retry') as { reason: string }).reason).toMatch(/md5 mismatch.*from scratch/);
  });
});

describe('downloadCifar: failures leave nothing taken for data', () => {
  it('rejects content with the wrong md5 (both md5s named), leaving no final dir and no .part', async () => {
    const other = craftTarGz([{ path: 'something-else.txt', body: Buffer.from('not cifar') }]);
    server.behaviour = { body: other };
    const error = await failure(download());
    expect(error.reason).toBe('md5');
    expect(error.url).toBe(server.url);
    expect(error.expectedMd5).toBe(archiveMd5);
    expect(error.actualMd5).toBe(md5(other));
    expect(error.message).toContain(archiveMd5);
    expect(error.message).toContain(md5(other));
    expect(error.message).toContain(server.url);
    expect(cacheListing()).toEqual([]);
    // A clean download that does not match is not fetched again.
    expect(server.requests).toHaveLength(1);
  });

  const unsafeCases: { name: string; entries: (root: string) => TarEntrySpec[]; entry: (root: string) => string; sentinels: string[] }[] = [
    {
      name: "a '../' entry",
      entries: () => [...goodEntries, { path: '../../evil', body: Buffer.from('pwned') }],
      entry: () => '../../evil',
      sentinels: ['evil', 'cache/evil'],
    },
    {
      name: "a '..' entry inside the data directory",
      entries: () => [...goodEntries, { path: `${BATCHES}/../../../evil`, body: Buffer.from('pwned') }],
      entry: () => `${BATCHES}/../../../evil`,
      sentinels: ['evil', 'cache/evil'],
    },
    {
      name: 'an absolute-path entry',
      entries: (root) => [...goodEntries, { path: join(root, 'abs-evil'), body: Buffer.from('pwned') }],
      entry: (root) => join(root, 'abs-evil'),
      sentinels: ['abs-evil'],
    },
    {
      name: 'a symlink entry (then a file written through it)',
      entries: (root) => [
        ...goodEntries,
        { path: `${BATCHES}/escape`, type: 'SymbolicLink', linkpath: root },
        { path: `${BATCHES}/escape/link-evil`, body: Buffer.from('pwned') },
      ],
      entry: () => `${BATCHES}/escape`,
      sentinels: ['link-evil'],
    },
    {
      name: 'a hard link entry',
      entries: (root) => [...goodEntries, { path: `${BATCHES}/hard`, type: 'Link', linkpath: join(root, 'target') }],
      entry: () => `${BATCHES}/hard`,
      sentinels: [],
    },
    {
      name: 'a fifo entry',
      entries: () => [...goodEntries, { path: `${BATCHES}/fifo`, type: 'FIFO' }],
      entry: () => `${BATCHES}/fifo`,
      sentinels: [],
    },
  ];

  it.each(unsafeCases)('refuses the whole archive for $name', async ({ entries, entry, sentinels }) => {
    const bad = craftTarGz(entries(root));
    server.archive = bad;
    const error = await failure(download({ md5: md5(bad) }));
    expect(error.reason).toBe('unsafe-entry');
    expect(error.entry).toBe(entry(root));
    expect(error.message).toContain(`'${entry(root)}'`);
    for (const sentinel of sentinels) expect(existsSync(join(root, sentinel))).toBe(false);
    // Only the (md5-verified) archive remains: no final dir, no .part, no .extract-* directory.
    expect(cacheListing()).toEqual([ARCHIVE]);
    expect(readdirSync(root)).toEqual(['cache']);
  });

  it('rejects an archive without the CIFAR layout (reason layout), leaving no final dir', async () => {
    const bad = craftTarGz([
      { path: `${BATCHES}/data_batch_1.bin`, body: Buffer.alloc(CIFAR_RECORD_BYTES + 1) },
      { path: `${BATCHES}/test_batch.bin`, body: FILES['test_batch.bin'] },
      { path: `${BATCHES}/batches.meta.txt`, body: FILES['batches.meta.txt'] },
    ]);
    server.archive = bad;
    const error = await failure(download({ md5: md5(bad) }));
    expect(error.reason).toBe('layout');
    expect(error.path).toMatch(/\.extract-\d+-[^/]+\/cifar-10-batches-bin\/data_batch_1\.bin$/);
    expect(error.message).toContain(`${CIFAR_RECORD_BYTES + 1} bytes`);
    expect(cacheListing()).toEqual([ARCHIVE]);
  });

  it('aborts promptly mid-transfer, keeps the .part, and the next call resumes from it', async () => {
    server.behaviour = { slow: { chunkBytes: 1024, intervalMs: 20 } };
    const controller = new AbortController();
    let abortedAt = 0;
    const onEvent = (e: DownloadEvent) => {
      if (e.kind === 'progress' && !controller.signal.aborted) {
        abortedAt = performance.now();
        controller.abort();
      }
    };
    const error = await failure(downloadCifar({ url: server.url, md5: archiveMd5, cacheDir, signal: controller.signal, onEvent }));
    expect(error.reason).toBe('aborted');
    expect(error.cause).toBe(controller.signal.reason);
    // The whole slow transfer would take ~500 ms; an abort is seen at the next read.
    expect(performance.now() - abortedAt).toBeLessThan(200);
    const partSize = statSync(join(cacheDir, PART)).size;
    expect(partSize).toBeGreaterThan(0);
    expect(partSize).toBeLessThan(archive.length);
    expect(cacheListing()).toEqual([PART]);

    server.behaviour = {};
    const events: DownloadEvent[] = [];
    const result = await download({}, events);
    expectGoodData(result.dir);
    expect(server.requests.at(-1)).toMatchObject({ range: `bytes=${partSize}-`, status: 206 });
    expect(events[0]).toMatchObject({ kind: 'start', resumedFrom: partSize });
  });

  it('aborts at extraction without leaving a final or temporary directory; the next call extracts without a request', async () => {
    const controller = new AbortController();
    const error = await failure(download({ signal: controller.signal, onEvent: (e) => e.kind === 'extract' && controller.abort() }));
    expect(error.reason).toBe('aborted');
    expect(cacheListing()).toEqual([ARCHIVE]);
    expectGoodData((await download()).dir);
    expect(server.requests).toHaveLength(1);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const error = await failure(download({ signal: AbortSignal.abort() }));
    expect(error.reason).toBe('aborted');
    expect(server.requests).toHaveLength(0);
  });

  it('reports HTTP 404 with its status', async () => {
    const error = await failure(download({ url: `${server.origin}/missing.tar.gz` }));
    expect(error.reason).toBe('http');
    expect(error.status).toBe(404);
    expect(error.message).toContain('404');
    expect(server.requests).toHaveLength(1);
    expect(cacheListing()).toEqual([]);
  });

  it('retries HTTP 500, then reports it with its status', async () => {
    server.behaviour = { status: 500 };
    const events: DownloadEvent[] = [];
    const error = await failure(download({ retries: 1 }, events));
    expect(error.reason).toBe('http');
    expect(error.status).toBe(500);
    expect(error.message).toContain('500');
    expect(server.requests).toHaveLength(2);
    expect(kinds(events)).toEqual(['retry']);
    expect(cacheListing()).toEqual([]);
  });

  it('uses fetchImpl, and refuses a body longer than announced (reason size), deleting the .part', async () => {
    const calls: string[] = [];
    const fetchImpl = (async (input: string | URL | Request) => {
      calls.push(String(input));
      return new Response(new Uint8Array(20), { status: 200, headers: { 'content-length': '10' } });
    }) as typeof fetch;
    const error = await failure(download({ url: 'https://example.invalid/cifar.tar.gz', fetchImpl }));
    expect(error.reason).toBe('size');
    expect(error.message).toContain('20 bytes');
    expect(calls).toEqual(['https://example.invalid/cifar.tar.gz']);
    expect(cacheListing()).toEqual([]);
  });

  it('reports a refused connection as network', async () => {
    const gone = await startCifarHttpServer(archive);
    const url = gone.url;
    await gone.close();
    const error = await failure(download({ url, retries: 0 }));
    expect(error.reason).toBe('network');
  });
});

describe('downloadCifar: options and defaults', () => {
  it('validates options with TrainerArgumentError', async () => {
    const bad: [Partial<DownloadOptions>, string][] = [
      [{ url: 42 as unknown as string }, 'options.url'],
      [{ url: 'ftp://example.com/x' }, 'options.url'],
      [{ md5: 'abc' }, 'options.md5'],
      [{ md5: 'g'.repeat(32) }, 'options.md5'],
      [{ retries: -1 }, 'options.retries'],
      [{ retries: 1.5 }, 'options.retries'],
      [{ cacheDir: '' }, 'options.cacheDir'],
      [{ signal: {} as AbortSignal }, 'options.signal'],
    ];
    for (const [options, argument] of bad) {
      const error = await downloadCifar({ cacheDir, ...options }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(TrainerArgumentError);
      expect(error).toMatchObject({ op: 'downloadCifar', argument });
    }
    expect(existsSync(cacheDir)).toBe(false);
  });

  it('defaultCacheDir: $BNMLP_DATA when set, else ~/.cache/bnmlp; the official URL and md5', () => {
    expect(defaultCacheDir({ [DATA_DIR_ENV]: join(root, 'data') })).toBe(join(root, 'data'));
    expect(defaultCacheDir({})).toBe(join(homedir(), '.cache', 'bnmlp'));
    expect(defaultCacheDir({ [DATA_DIR_ENV]: '' })).toBe(join(homedir(), '.cache', 'bnmlp'));
    expect(CIFAR_BINARY_URL).toBe('https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz');
    expect(CIFAR_BINARY_MD5).toBe('c32a1d4ab5d03f1284b67883e8d87530');
  });
});
