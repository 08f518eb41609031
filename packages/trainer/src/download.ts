import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Parser, ReadEntry, Unpack } from 'tar';
import { CIFAR_META_FILE, CIFAR_RECORD_BYTES, CIFAR_TEST_FILE } from './cifar.js';
import { TrainerArgumentError } from './errors.js';

/*
downloadCifar fetches the official CIFAR-10 binary archive into a cache directory and unpacks it.

Cache layout (everything inside <cacheDir>):
  cifar-10-batches-bin/          the data; it only ever appears by renaming a complete, checked
                                 extraction, so its existence alone means "done"
  cifar-10-binary.tar.gz         the archive, renamed from .part once its md5 matched; kept so a
                                 failed or interrupted extraction needs no new download
  cifar-10-binary.tar.gz.part    a transfer in progress or interrupted; resumed with Range
  .extract-<pid>-<random>/       a private extraction directory, removed in every case (and, when
                                 its process died without cleaning up, by the next call)

Failures are DownloadError with a `reason`. Abort (options.signal) is reported as DownloadError
reason 'aborted' (its `cause` is the signal's reason), never as the raw AbortError, so callers
need one catch. An aborted transfer keeps its .part for the next call.
*/

export const CIFAR_BINARY_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR_BINARY_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
/** The environment variable that overrides defaultCacheDir. */
export const DATA_DIR_ENV = 'BNMLP_DATA';
/** The directory the archive unpacks to, inside the cache directory. */
export const CIFAR_BATCHES_DIR = 'cifar-10-batches-bin';
export const CIFAR_ARCHIVE_FILE = 'cifar-10-binary.tar.gz';

const PART_SUFFIX = '.part';
const WORK_PREFIX = '.extract-';
const DEFAULT_RETRIES = 3;
const RETRY_BACKOFF_MS = 200;
const PROGRESS_INTERVAL_MS = 100;
/** Statuses that say "try again later" rather than "this will never work". */
const TRANSIENT_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/** Regular files and directories only: links, devices and fifos have no place in a data archive. */
const SAFE_ENTRY_TYPES = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory']);
const TRAIN_FILE = /^data_batch_\d+\.bin$/;

/** $BNMLP_DATA when set and non-empty, else ~/.cache/bnmlp. */
export function defaultCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const fromEnv = env[DATA_DIR_ENV];
  return fromEnv ? resolve(fromEnv) : join(homedir(), '.cache', 'bnmlp');
}

/**
 * What downloadCifar is doing. Byte counts are of the whole archive: after a resume,
 * `receivedBytes` includes the `resumedFrom` bytes already on disk, and `totalBytes` is the
 * archive's full size (null when the server did not say). `start` is emitted for every response
 * that starts a transfer (so again after a retry); `progress` at most every 100 ms plus once at
 * the end of each transfer; `retry` before each new attempt (`attempt` counts from 1 within a call).
 */
export type DownloadEvent =
  | { kind: 'start'; url: string; totalBytes: number | null; resumedFrom: number }
  | { kind: 'progress'; receivedBytes: number; totalBytes: number | null }
  | { kind: 'retry'; attempt: number; reason: string }
  | { kind: 'verify' }
  | { kind: 'extract' }
  | { kind: 'done'; dir: string; cached: boolean };

export interface DownloadOptions {
  /** Default CIFAR_BINARY_URL; an http(s) URL. Redirects are followed. */
  url?: string;
  /** Expected md5 of the whole archive (32 hex digits). Default CIFAR_BINARY_MD5. */
  md5?: string;
  /** Default defaultCacheDir(); created (recursively) when missing. */
  cacheDir?: string;
  /** Stops the transfer or extraction promptly; the call rejects with DownloadError reason 'aborted'. */
  signal?: AbortSignal;
  /** Called synchronously; an exception thrown here ends the call with that exception. */
  onEvent?: (event: DownloadEvent) => void;
  /**
   * New attempts after a network error, a connection cut short or a transient HTTP status
   * (408, 429, 5xx), each resuming from the .part. Default 3. Separately, one restart from
   * scratch is made when a resumed archive fails its md5 check.
   */
  retries?: number;
  /** Download and extract again even when the data or the archive is already there. */
  force?: boolean;
  /** Default the global fetch. */
  fetchImpl?: typeof fetch;
}

export interface DownloadResult {
  /** <cacheDir>/cifar-10-batches-bin */
  dir: string;
  /** True when the data was already there and nothing was downloaded or extracted. */
  cached: boolean;
  /** <cacheDir>/cifar-10-binary.tar.gz (it may have been deleted since, when cached). */
  archive: string;
}

/**
 * - http: an HTTP status other than 200/206 (the final one, when transient statuses were retried).
 * - network: the request failed or the connection dropped, and the retries ran out.
 * - md5: the archive is not the expected one (expectedMd5, actualMd5).
 * - unsafe-entry: the archive holds an entry that could write outside its directory, or a link,
 *   device or fifo (entry); nothing of it was extracted.
 * - aborted: options.signal fired (cause: the signal's reason).
 * - layout: the archive or the cached directory is not a CIFAR-10 binary directory (path).
 * - size: the server sent more bytes than it announced (path: the .part, which is deleted).
 */
export type DownloadFailureReason = 'http' | 'network' | 'md5' | 'unsafe-entry' | 'aborted' | 'layout' | 'size';

export interface DownloadErrorDetails {
  readonly status?: number;
  readonly expectedMd5?: string;
  readonly actualMd5?: string;
  readonly entry?: string;
  readonly path?: string;
  readonly cause?: unknown;
}

export class DownloadError extends Error {
  override readonly name: string = 'DownloadError';
  /** The HTTP status, for reason 'http'. */
  readonly status: number | null;
  readonly expectedMd5: string | null;
  readonly actualMd5: string | null;
  /** The archive entry's path as stored, for reason 'unsafe-entry'. */
  readonly entry: string | null;
  /** The file or directory concerned, for reasons 'layout' and 'size'. */
  readonly path: string | null;
  constructor(
    readonly url: string,
    readonly reason: DownloadFailureReason,
    detail: string,
    details: DownloadErrorDetails = {},
  ) {
    super(`downloadCifar: ${url}: ${detail}`, details.cause === undefined ? undefined : { cause: details.cause });
    this.status = details.status ?? null;
    this.expectedMd5 = details.expectedMd5 ?? null;
    this.actualMd5 = details.actualMd5 ?? null;
    this.entry = details.entry ?? null;
    this.path = details.path ?? null;
  }
}

/** A failure another attempt may cure; becomes a DownloadError when the retries run out. */
class TransientFailure extends Error {
  constructor(
    readonly reason: 'http' | 'network',
    message: string,
    readonly status: number | null = null,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

interface Context {
  readonly url: string;
  readonly md5: string;
  readonly cacheDir: string;
  readonly retries: number;
  readonly force: boolean;
  readonly signal: AbortSignal | undefined;
  readonly fetch: typeof fetch;
  readonly emit: (event: DownloadEvent) => void;
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // undici's "fetch failed" / "terminated" say little; the cause names the socket error.
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

function validateOptions(options: DownloadOptions): Context {
  const op = 'downloadCifar';
  if (options === null || typeof options !== 'object') throw new TrainerArgumentError(op, 'options', 'an options object', describe(options));
  const url = options.url ?? CIFAR_BINARY_URL;
  let protocol: string | null = null;
  try {
    protocol = typeof url === 'string' ? new URL(url).protocol : null;
  } catch {
    protocol = null;
  }
  if (protocol !== 'http:' && protocol !== 'https:') throw new TrainerArgumentError(op, 'options.url', 'an http(s) URL string', describe(url));
  const md5 = options.md5 ?? CIFAR_BINARY_MD5;
  if (typeof md5 !== 'string' || !/^[0-9a-fA-F]{32}$/.test(md5)) throw new TrainerArgumentError(op, 'options.md5', '32 hexadecimal digits', describe(md5));
  const retries = options.retries ?? DEFAULT_RETRIES;
  if (!Number.isInteger(retries) || retries < 0) throw new TrainerArgumentError(op, 'options.retries', 'an integer >= 0', describe(retries));
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  if (typeof cacheDir !== 'string' || cacheDir === '') throw new TrainerArgumentError(op, 'options.cacheDir', 'a directory path', describe(cacheDir));
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal))
    throw new TrainerArgumentError(op, 'options.signal', 'an AbortSignal', describe(options.signal));
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function')
    throw new TrainerArgumentError(op, 'options.onEvent', 'a function', describe(options.onEvent));
  if (options.force !== undefined && typeof options.force !== 'boolean')
    throw new TrainerArgumentError(op, 'options.force', 'a boolean', describe(options.force));
  if (options.fetchImpl !== undefined && typeof options.fetchImpl !== 'function')
    throw new TrainerArgumentError(op, 'options.fetchImpl', 'a fetch function', describe(options.fetchImpl));
  const onEvent = options.onEvent;
  return {
    url,
    md5: md5.toLowerCase(),
    cacheDir: resolve(cacheDir),
    retries,
    force: options.force ?? false,
    signal: options.signal,
    fetch: options.fetchImpl ?? fetch,
    emit: onEvent ? (event) => onEvent(event) : () => {},
  };
}

function abortedError(ctx: Context): DownloadError {
  return new DownloadError(ctx.url, 'aborted', 'aborted', { cause: ctx.signal?.reason });
}

function throwIfAborted(ctx: Context): void {
  if (ctx.signal?.aborted) throw abortedError(ctx);
}

async function pathKind(path: string): Promise<'file' | 'directory' | 'other' | null> {
  try {
    const stats = await lstat(path);
    return stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : 'other';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await lstat(path)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

/** Feeds a file through `hash` (streamed: the archive is ~170 MB), stopping when the signal fires. */
async function hashFile(ctx: Context, path: string, hash: Hash): Promise<void> {
  const stream = createReadStream(path);
  try {
    for await (const chunk of stream) {
      throwIfAborted(ctx);
      hash.update(chunk as Buffer);
    }
  } finally {
    stream.destroy();
  }
}

async function md5OfFile(ctx: Context, path: string): Promise<string> {
  const hash = createHash('md5');
  await hashFile(ctx, path, hash);
  return hash.digest('hex');
}

/** Releases a response we will not read, so its connection is not left hanging. */
async function discard(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => {});
}

function parseContentRange(header: string | null): { start: number; end: number; total: number | null } | null {
  const match = header === null ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header.trim());
  if (!match) return null;
  return { start: Number(match[1]), end: Number(match[2]), total: match[3] === '*' ? null : Number(match[3]) };
}

function contentLength(response: Response): number | null {
  // fetch decodes a Content-Encoding, after which Content-Length no longer counts what we read.
  const encoding = response.headers.get('content-encoding');
  if (encoding && encoding.trim().toLowerCase() !== 'identity') return null;
  const header = response.headers.get('content-length');
  return header !== null && /^\d+$/.test(header.trim()) ? Number(header) : null;
}

/**
 * One request: resumes from the .part when there is one, appends (206) or starts over (200),
 * and returns the md5 of the whole .part once the response ended with every announced byte.
 * Throws TransientFailure for what a retry may cure.
 */
async function transferOnce(ctx: Context, part: string): Promise<{ md5: string; resumedFrom: number }> {
  const offset = await fileSize(part);
  // identity: a server that gzips the .tar.gz again would have fetch hand us different bytes.
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (offset > 0) headers.range = `bytes=${offset}-`;
  let response: Response;
  try {
    response = await ctx.fetch(ctx.url, { headers, signal: ctx.signal, redirect: 'follow' });
  } catch (error) {
    throwIfAborted(ctx);
    throw new TransientFailure('network', `request failed: ${errorText(error)}`, null, error);
  }

  if (response.status === 416 && offset > 0) {
    // Nothing past our .part: it is either the whole archive or garbage, and its md5 says which.
    await discard(response);
    return { md5: await md5OfFile(ctx, part), resumedFrom: offset };
  }
  if (response.status !== 200 && response.status !== 206) {
    await discard(response);
    const detail = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
    if (TRANSIENT_STATUS.has(response.status)) throw new TransientFailure('http', detail, response.status);
    throw new DownloadError(ctx.url, 'http', detail, { status: response.status });
  }
  if (!response.body) throw new TransientFailure('network', `HTTP ${response.status} without a body`);

  let start = 0;
  let total = contentLength(response);
  if (response.status === 206) {
    const header = response.headers.get('content-range');
    const range = parseContentRange(header);
    if (offset === 0 || range === null || range.start !== offset) {
      // Not the bytes we asked for: appending them would corrupt the archive, so start over.
      await discard(response);
      await rm(part, { force: true });
      throw new TransientFailure('network', `unexpected partial response (Content-Range ${header ?? 'missing'} for bytes=${offset}-); restarting from scratch`);
    }
    start = offset;
    total = range.total ?? (total === null ? null : offset + total);
  }
  // 200 to a Range request: the server ignored it and sends everything, so the .part is truncated.

  const hash = createHash('md5');
  let received = start;
  let reported = -1;
  let lastReport = -Infinity;
  const report = () => {
    reported = received;
    lastReport = performance.now();
    ctx.emit({ kind: 'progress', receivedBytes: received, totalBytes: total });
  };
  const reader = response.body.getReader();
  let handle: FileHandle | null = null;
  let finished = false;
  try {
    // The md5 must cover the whole archive, so the kept bytes go through the hash first.
    if (start > 0) await hashFile(ctx, part, hash);
    handle = await open(part, start > 0 ? 'a' : 'w');
    ctx.emit({ kind: 'start', url: ctx.url, totalBytes: total, resumedFrom: start });
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        throwIfAborted(ctx);
        throw new TransientFailure('network', `connection lost after ${received} of ${total ?? 'unknown'} bytes: ${errorText(error)}`, null, error);
      }
      if (chunk.done) break;
      // Written to disk as it arrives: never the whole archive in memory.
      await handle.write(chunk.value);
      hash.update(chunk.value);
      received += chunk.value.length;
      if (performance.now() - lastReport >= PROGRESS_INTERVAL_MS) report();
      // More than announced: no use reading on (refused below).
      if (total !== null && received > total) break;
    }
    finished = total === null || received <= total;
  } finally {
    await handle?.close();
    // Whatever stopped us early (abort, a throwing onEvent, a disk error), the connection is released.
    if (!finished) await reader.cancel().catch(() => {});
  }
  if (reported !== received) report();

  if (total !== null && received < total) throw new TransientFailure('network', `connection closed after ${received} of ${total} bytes`);
  if (total !== null && received > total) {
    await rm(part, { force: true });
    throw new DownloadError(ctx.url, 'size', `received ${received} bytes, more than the announced ${total}`, { path: part });
  }
  return { md5: hash.digest('hex'), resumedFrom: start };
}

/** Brings <cacheDir>/cifar-10-binary.tar.gz.part to a complete archive with the expected md5. */
async function downloadPart(ctx: Context, part: string): Promise<void> {
  let retriesUsed = 0;
  let events = 0;
  let stitched = false;
  let restartedClean = false;
  for (;;) {
    throwIfAborted(ctx);
    let result: { md5: string; resumedFrom: number };
    try {
      result = await transferOnce(ctx, part);
    } catch (error) {
      if (!(error instanceof TransientFailure)) throw error;
      if (retriesUsed >= ctx.retries) {
        const after = retriesUsed === 0 ? '' : ` (after ${retriesUsed} ${retriesUsed === 1 ? 'retry' : 'retries'})`;
        throw new DownloadError(ctx.url, error.reason, `${error.message}${after}`, { status: error.status ?? undefined, cause: error.cause });
      }
      retriesUsed++;
      ctx.emit({ kind: 'retry', attempt: ++events, reason: error.message });
      try {
        await sleep(RETRY_BACKOFF_MS * retriesUsed, undefined, { signal: ctx.signal });
      } catch {
        throw abortedError(ctx);
      }
      continue;
    }
    if (result.resumedFrom > 0) stitched = true;
    ctx.emit({ kind: 'verify' });
    if (result.md5 === ctx.md5) return;
    await rm(part, { force: true });
    // A resumed archive may hold stale bytes from another version of the file: one clean try.
    // A clean download that does not match would not match again, so it fails at once.
    if (stitched && !restartedClean) {
      restartedClean = true;
      stitched = false;
      ctx.emit({ kind: 'retry', attempt: ++events, reason: `md5 mismatch (expected ${ctx.md5}, got ${result.md5}) after resuming; restarting from scratch` });
      continue;
    }
    throw new DownloadError(ctx.url, 'md5', `md5 mismatch: expected ${ctx.md5}, got ${result.md5}`, { expectedMd5: ctx.md5, actualMd5: result.md5 });
  }
}

/** Why an archive entry must not be extracted, or null when it is a plain file or directory inside `root`. */
function unsafeEntryReason(entry: ReadEntry, root: string): string | null {
  if (!SAFE_ENTRY_TYPES.has(entry.type)) return `is a ${entry.type} (only regular files and directories are accepted)`;
  const raw = entry.path;
  if (raw === '' || raw.includes('\0')) return 'has an empty or NUL-containing path';
  const path = raw.replaceAll('\\', '/');
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'has an absolute path';
  if (path.split('/').includes('..')) return "has a '..' path segment";
  const target = resolve(root, path);
  if (target !== root && !target.startsWith(root + sep)) return 'resolves outside the extraction directory';
  return null;
}

function unsafeEntryError(ctx: Context, entry: ReadEntry, why: string): DownloadError {
  return new DownloadError(ctx.url, 'unsafe-entry', `refusing the archive: entry '${entry.path}' ${why}`, { entry: entry.path });
}

/**
 * Pipes the archive into a tar Parser/Unpack; settles when it has closed (for Unpack: every file
 * written), on its first error, or when the signal fires. `stop` ends it early with an error.
 */
function runTar(ctx: Context, archive: string, sink: Parser, setStop: (stop: (error: Error) => void) => void): Promise<void> {
  return new Promise<void>((resolvePromise, reject) => {
    const source = createReadStream(archive);
    let settled = false;
    const settle = (error?: Error) => {
      if (settled) return;
      settled = true;
      ctx.signal?.removeEventListener('abort', onAbort);
      if (error) {
        source.unpipe();
        source.destroy();
        // A stand-in: tar decorates what it is given (code, tarCode, cwd) and emits it again.
        sink.abort(new Error('extraction stopped'));
        reject(error);
      } else resolvePromise();
    };
    const onAbort = () => settle(abortedError(ctx));
    setStop(settle);
    // tar reports damage as errors (strict); the listener stays so late ones after settling are not unhandled.
    sink.on('error', (error: Error) => settle(error));
    sink.on('close', () => settle());
    source.on('error', (error) => settle(error));
    if (ctx.signal?.aborted) return settle(abortedError(ctx));
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    source.pipe(sink);
  });
}

/** Reads the whole archive without writing anything and refuses it at its first unsafe entry. */
async function scanArchive(ctx: Context, archive: string, root: string): Promise<void> {
  let stop: (error: Error) => void = () => {};
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry) => {
      const why = unsafeEntryReason(entry, root);
      if (why !== null) stop(unsafeEntryError(ctx, entry, why));
      entry.resume();
    },
  });
  await runTar(ctx, archive, parser, (s) => (stop = s));
}

async function unpackArchive(ctx: Context, archive: string, root: string): Promise<void> {
  let refused: DownloadError | null = null;
  const unpack = new Unpack({
    cwd: root,
    strict: true,
    preserveOwner: false,
    // Checked again while extracting (scanArchive already did): should the file differ between
    // the two passes, an unsafe entry is skipped here and the archive refused below.
    filter: (_path, entry) => {
      if (!(entry instanceof ReadEntry)) return false;
      const why = unsafeEntryReason(entry, root);
      if (why !== null) refused ??= unsafeEntryError(ctx, entry, why);
      return why === null;
    },
  });
  await runTar(ctx, archive, unpack, () => {});
  if (refused) throw refused;
}

function layoutError(ctx: Context, path: string, detail: string, cached: boolean): DownloadError {
  const hint = cached ? ' (pass force: true to download it again)' : '';
  return new DownloadError(ctx.url, 'layout', `${path}: ${detail}${hint}`, { path });
}

/**
 * A CIFAR-10 binary directory: data_batch_<n>.bin files, test_batch.bin and batches.meta.txt
 * (readCifarDirectory needs it), every .bin a regular file of a whole, positive number of records.
 */
async function checkLayout(ctx: Context, dir: string, cached: boolean): Promise<void> {
  if ((await pathKind(dir)) !== 'directory')
    throw layoutError(ctx, dir, cached ? 'not a directory' : `the archive has no ${CIFAR_BATCHES_DIR}/ directory`, cached);
  const names = await readdir(dir);
  const batches = names.filter((name) => TRAIN_FILE.test(name));
  if (batches.length === 0) throw layoutError(ctx, dir, 'no data_batch_<n>.bin file', cached);
  for (const name of [CIFAR_TEST_FILE, CIFAR_META_FILE])
    if (!names.includes(name)) throw layoutError(ctx, dir, `no ${name}`, cached);
  for (const name of [...batches, CIFAR_TEST_FILE, CIFAR_META_FILE]) {
    const path = join(dir, name);
    const stats = await lstat(path);
    if (!stats.isFile()) throw layoutError(ctx, path, 'not a regular file', cached);
    if (name.endsWith('.bin') && (stats.size === 0 || stats.size % CIFAR_RECORD_BYTES !== 0))
      throw layoutError(ctx, path, `${stats.size} bytes, not a positive multiple of ${CIFAR_RECORD_BYTES}`, cached);
  }
}

/**
 * Extracts into a fresh private directory, checks it, and renames its cifar-10-batches-bin into
 * place: the final directory is complete or absent, whatever happens. The private directory is
 * removed in every case (with whatever it holds: partial files, a replaced old copy).
 */
async function extractInto(ctx: Context, archive: string, finalDir: string): Promise<void> {
  const work = await mkdtemp(join(ctx.cacheDir, `${WORK_PREFIX}${process.pid}-`));
  try {
    // List first, extract second: an unsafe entry refuses the whole archive before any byte is written.
    await scanArchive(ctx, archive, work);
    throwIfAborted(ctx);
    await unpackArchive(ctx, archive, work);
    throwIfAborted(ctx);
    const extracted = join(work, CIFAR_BATCHES_DIR);
    await checkLayout(ctx, extracted, false);
    throwIfAborted(ctx);
    try {
      await rename(extracted, finalDir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      // Only with force, or when another process finished first (its copy is complete too).
      if (!ctx.force) return;
      await rename(finalDir, join(work, 'previous'));
      await rename(extracted, finalDir);
    }
  } catch (error) {
    // tar's own complaints (a damaged or non-tar archive) are about the archive's content.
    const code = (error as NodeJS.ErrnoException)?.code;
    if (!(error instanceof DownloadError) && typeof code === 'string' && code.startsWith('TAR_'))
      throw new DownloadError(ctx.url, 'layout', `cannot extract ${archive}: ${errorText(error)}`, { path: archive, cause: error });
    throw error;
  } finally {
    await rm(work, { recursive: true, force: true, maxRetries: 3 });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes extraction directories left by processes that died mid-extraction (a `finally` does
 * not run on SIGKILL or a default Ctrl-C). A live process's directory, ours included, is left alone.
 */
async function removeStaleWorkDirs(cacheDir: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    const match = /^\.extract-(\d+)-/.exec(name);
    if (match && !processAlive(Number(match[1]))) await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}

/**
 * Makes the CIFAR-10 binary batches available in `<cacheDir>/cifar-10-batches-bin` (see the note at
 * the top of this file for the cache layout), downloading and extracting them when needed:
 *
 * - the directory already there: returns `{ cached: true }` without any request (unless `force`);
 * - an archive already there (an earlier extraction failed or was interrupted) is reused once its
 *   md5 matches, else deleted;
 * - otherwise the archive is downloaded to a .part (resumed when one exists), checked against
 *   `md5`, renamed, then extracted safely and checked (see extractInto).
 *
 * Rejects with DownloadError (see DownloadFailureReason), or TrainerArgumentError for bad options.
 */
export async function downloadCifar(options: DownloadOptions = {}): Promise<DownloadResult> {
  const ctx = validateOptions(options);
  const finalDir = join(ctx.cacheDir, CIFAR_BATCHES_DIR);
  const archive = join(ctx.cacheDir, CIFAR_ARCHIVE_FILE);
  const part = archive + PART_SUFFIX;
  try {
    throwIfAborted(ctx);
    await mkdir(ctx.cacheDir, { recursive: true });
    await removeStaleWorkDirs(ctx.cacheDir);
    if (!ctx.force && (await pathKind(finalDir)) !== null) {
      await checkLayout(ctx, finalDir, true);
      ctx.emit({ kind: 'done', dir: finalDir, cached: true });
      return { dir: finalDir, cached: true, archive };
    }

    let haveArchive = false;
    if (ctx.force) {
      await rm(part, { force: true });
    } else if ((await pathKind(archive)) === 'file') {
      ctx.emit({ kind: 'verify' });
      haveArchive = (await md5OfFile(ctx, archive)) === ctx.md5;
      if (!haveArchive) await rm(archive, { force: true });
    }
    if (!haveArchive) {
      await downloadPart(ctx, part);
      await rename(part, archive);
    }

    throwIfAborted(ctx);
    ctx.emit({ kind: 'extract' });
    await extractInto(ctx, archive, finalDir);
    ctx.emit({ kind: 'done', dir: finalDir, cached: false });
    return { dir: finalDir, cached: false, archive };
  } catch (error) {
    // Whatever was interrupted (fetch, a read, a sleep), an abort is reported one way.
    if (ctx.signal?.aborted && !(error instanceof DownloadError && error.reason === 'aborted')) throw abortedError(ctx);
    throw error;
  }
}
