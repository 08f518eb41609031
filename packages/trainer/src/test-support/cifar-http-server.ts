import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Header, type HeaderData } from 'tar';
import { CIFAR_RECORD_BYTES } from '../cifar.js';

/*
A loopback HTTP server (127.0.0.1, ephemeral port) that serves one in-memory archive the way a
real file server does (Content-Length, Range → 206 / 416), and can misbehave on request so the
downloader's recovery paths can be tested without the network.
*/

export const ARCHIVE_PATH = '/cifar-10-binary.tar.gz';
/** Answers 302 to ARCHIVE_PATH. */
export const REDIRECT_PATH = '/redirect';

const CUT_PAUSE_MS = 50;

export interface CifarServerBehaviour {
  /**
   * First request under this behaviour object only: announce the full length, send this many body
   * bytes, then cut the connection (after a short pause, so the client has read them: bytes still
   * queued in a fetch body when the connection errors are dropped).
   */
  cutFirstAfter?: number;
  /** Answer 200 with the whole body to every request, Range or not. */
  ignoreRange?: boolean;
  /** Answer every request with this status and a short text body. */
  status?: number;
  /** Serve these bytes instead of the archive (e.g. other content, for an md5 mismatch). */
  body?: Uint8Array;
  /** Send the body in chunks of `chunkBytes`, one every `intervalMs`. */
  slow?: { chunkBytes: number; intervalMs: number };
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  /** The Range header as received, or null. */
  readonly range: string | null;
  readonly acceptEncoding: string | null;
  /** The status answered. */
  readonly status: number;
}

export interface CifarHttpServer {
  /** http://127.0.0.1:<port> */
  readonly origin: string;
  /** origin + ARCHIVE_PATH */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Read at each request, so tests may change it between calls. */
  behaviour: CifarServerBehaviour;
  /** The archive served when behaviour.body is not set. */
  archive: Uint8Array;
  close(): Promise<void>;
}

export async function startCifarHttpServer(archive: Uint8Array, behaviour: CifarServerBehaviour = {}): Promise<CifarHttpServer> {
  let closed = false;
  // Behaviour objects whose one cut has happened: a new behaviour object cuts afresh.
  const cutDone = new WeakSet<CifarServerBehaviour>();
  const timers = new Set<NodeJS.Timeout>();
  const state: CifarHttpServer = {
    origin: '',
    url: '',
    requests: [],
    behaviour,
    archive,
    close: async () => {
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };

  const record = (req: IncomingMessage, status: number) =>
    state.requests.push({
      method: req.method ?? '',
      path: req.url ?? '',
      range: req.headers.range ?? null,
      acceptEncoding: (req.headers['accept-encoding'] as string | undefined) ?? null,
      status,
    });

  const sendSlowly = (res: ServerResponse, bytes: Uint8Array, chunkBytes: number, intervalMs: number) => {
    let offset = 0;
    const next = () => {
      if (closed || res.destroyed) return;
      if (offset >= bytes.length) return void res.end();
      res.write(bytes.subarray(offset, offset + chunkBytes));
      offset += chunkBytes;
      const timer = setTimeout(() => {
        timers.delete(timer);
        next();
      }, intervalMs);
      timers.add(timer);
    };
    next();
  };

  const server = createServer((req, res) => {
    const b = state.behaviour;
    const path = req.url ?? '';
    if (path === REDIRECT_PATH) {
      record(req, 302);
      res.writeHead(302, { location: ARCHIVE_PATH }).end();
      return;
    }
    if (path !== ARCHIVE_PATH) {
      record(req, 404);
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    if (b.status !== undefined) {
      record(req, b.status);
      res.writeHead(b.status, { 'content-type': 'text/plain' }).end(`status ${b.status}`);
      return;
    }
    const body = b.body ?? state.archive;
    const size = body.length;
    let start = 0;
    const range = b.ignoreRange ? null : /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) {
      start = Number(range[1]);
      if (start >= size) {
        record(req, 416);
        res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
        return;
      }
    }
    const status = range ? 206 : 200;
    record(req, status);
    const headers: Record<string, string | number> = { 'content-type': 'application/x-gzip', 'content-length': size - start, 'accept-ranges': 'bytes' };
    if (range) headers['content-range'] = `bytes ${start}-${size - 1}/${size}`;
    res.writeHead(status, headers);
    const payload = body.subarray(start);
    if (b.cutFirstAfter !== undefined && !cutDone.has(b)) {
      cutDone.add(b);
      res.write(payload.subarray(0, b.cutFirstAfter), () => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          res.socket?.destroy();
        }, CUT_PAUSE_MS);
        timers.add(timer);
      });
      return;
    }
    if (b.slow) sendSlowly(res, payload, b.slow.chunkBytes, b.slow.intervalMs);
    else res.end(payload);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  Object.assign(state, { origin: `http://127.0.0.1:${port}`, url: `http://127.0.0.1:${port}${ARCHIVE_PATH}` });
  return state;
}

export interface TarEntrySpec {
  /** Stored as given: absolute paths and '..' segments included. */
  readonly path: string;
  readonly type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO';
  readonly body?: Uint8Array;
  readonly linkpath?: string;
}

/**
 * A gzipped tar built header by header, so entries a careful packer would refuse to write
 * (absolute paths, '..', links pointing outside) can be crafted exactly.
 */
export function craftTarGz(entries: readonly TarEntrySpec[]): Buffer {
  const blocks: Buffer[] = [];
  for (const spec of entries) {
    const type = spec.type ?? 'File';
    const body = type === 'File' ? Buffer.from(spec.body ?? new Uint8Array(0)) : Buffer.alloc(0);
    const data: HeaderData = {
      path: spec.path,
      type,
      mode: type === 'Directory' ? 0o755 : 0o644,
      size: body.length,
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      linkpath: spec.linkpath,
    };
    const header = new Header(data);
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    if (header.needPax) throw new Error(`craftTarGz: '${spec.path}' needs a pax header; use a shorter path`);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/** Fills `bytes` with xorshift32 noise from `seed` (0 counts as 1); returns them. */
export function fillXorshift<T extends Uint8Array>(bytes: T, seed: number): T {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** `records` CIFAR binary records of xorshift noise, labels (r + seed) mod 10: a batch file to serve. */
export function batchBytes(records: number, seed: number): Buffer {
  const bytes = fillXorshift(Buffer.alloc(records * CIFAR_RECORD_BYTES), seed);
  for (let r = 0; r < records; r++) bytes[r * CIFAR_RECORD_BYTES] = (r + seed) % 10;
  return bytes;
}
