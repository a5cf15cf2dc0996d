/**
 * An append-only journal of records in bounded segment files.
 *
 * Each record is `[u32 length][u32 crc32][payload]`. Appends are group-committed: everything
 * that arrives while a write is in progress goes out in the next single write (O_DSYNC), so
 * the cost of a commit depends on the batch, never on how much is stored. A torn record at the
 * tail (a crash mid-write) fails its CRC and is cut off on open.
 */
import { constants } from 'node:fs';
import { mkdir, open, readdir, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { PosternError } from '../../shared/errors.ts';
import { fsyncDirectory } from './durable-file.ts';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './file-modes.ts';

const HEADER_BYTES = 8;
/** The segment being appended to is opened for synchronous data writes (see #commit). */
const APPEND_FLAGS = constants.O_RDWR | constants.O_DSYNC;
/** Longest a lazy record waits for a durable commit to ride along with. */
export const LAZY_FLUSH_MS = 50;
const SEGMENT_NAME = /^(\d{10})\.seg$/;

export interface Location {
  segment: number;
  /** Offset of the payload (after the record header). */
  offset: number;
  length: number;
}

export interface JournalOptions {
  /** A segment is sealed and a new one started once it grows past this size. */
  segmentBytes: number;
}

interface Pending {
  payload: Buffer;
  resolve: (loc: Location) => void;
  reject: (err: unknown) => void;
}

function segmentFile(dir: string, n: number): string {
  return path.join(dir, `${String(n).padStart(10, '0')}.seg`);
}

export class Journal {
  readonly #dir: string;
  readonly #opts: JournalOptions;
  readonly #handles = new Map<number, FileHandle>();
  #active = 0;
  #position = 0;
  #pending: Pending[] = [];
  /** Durable records among `#pending`: while there are any, the writer keeps going. */
  #durableWaiting = 0;
  #lazyTimer: NodeJS.Timeout | null = null;
  #writing: Promise<void> | null = null;
  #closed = false;

  constructor(dir: string, opts: JournalOptions) {
    this.#dir = dir;
    this.#opts = opts;
  }

  /** Replays every record in order, cutting off a torn tail, then opens for appends. */
  async open(onRecord: (payload: Buffer, loc: Location) => void): Promise<void> {
    // The umask can only narrow this mode; an existing directory is tightened by the store.
    await mkdir(this.#dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const segments = (await readdir(this.#dir))
      .map((name) => SEGMENT_NAME.exec(name)?.[1])
      .filter((n): n is string => n !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    for (const [i, n] of segments.entries()) {
      const last = i === segments.length - 1;
      const handle = await open(segmentFile(this.#dir, n), last ? APPEND_FLAGS : 'r');
      this.#handles.set(n, handle);
      const data = await handle.readFile();
      const valid = this.#scan(n, data, onRecord);
      if (valid < data.length) {
        if (!last) {
          await this.close();
          throw new PosternError(
            'ERR_STORE_CORRUPT',
            `${segmentFile(this.#dir, n)}: damaged record at byte ${valid} of a sealed segment`,
          );
        }
        // A crash cut the last write short: nothing past `valid` was ever acknowledged.
        await handle.truncate(valid);
        await handle.sync();
      }
      this.#active = n;
      this.#position = valid;
    }
    if (segments.length === 0) await this.#startSegment(1);
  }

  #scan(segment: number, data: Buffer, onRecord: (p: Buffer, l: Location) => void): number {
    let at = 0;
    while (at + HEADER_BYTES <= data.length) {
      const length = data.readUInt32BE(at);
      const crc = data.readUInt32BE(at + 4);
      const start = at + HEADER_BYTES;
      // Every payload has at least its kind byte: a zero length is a zero-filled tail.
      if (length === 0 || start + length > data.length) break;
      const payload = data.subarray(start, start + length);
      if (crc32(payload) !== crc) break;
      onRecord(payload, { segment, offset: start, length });
      at = start + length;
    }
    return at;
  }

  /**
   * Resolves once the payload is on disk (written with O_DSYNC). A `lazy` record does not
   * start a commit of its own: it rides along with the next durable one, or goes out after
   * `LAZY_FLUSH_MS`. Records always reach the file in the order they were appended.
   */
  append(payload: Buffer, opts: { lazy?: boolean } = {}): Promise<Location> {
    if (payload.length === 0) {
      return Promise.reject(new PosternError('ERR_STORE_WRITE', 'empty journal record'));
    }
    if (this.#closed) {
      return Promise.reject(new PosternError('ERR_SHUTTING_DOWN', 'journal is closed'));
    }
    return new Promise((resolve, reject) => {
      this.#pending.push({ payload, resolve, reject });
      if (opts.lazy) {
        this.#lazyTimer ??= setTimeout(() => {
          this.#lazyTimer = null;
          this.#writing ??= this.#drain();
        }, LAZY_FLUSH_MS);
      } else {
        this.#durableWaiting++;
        this.#writing ??= this.#drain();
      }
    });
  }

  async #drain(): Promise<void> {
    try {
      // Whole queue per batch, in order; stop once only lazy records are left.
      do {
        const batch = this.#pending;
        this.#pending = [];
        this.#durableWaiting = 0;
        if (this.#lazyTimer) clearTimeout(this.#lazyTimer);
        this.#lazyTimer = null;
        if (batch.length > 0) await this.#commit(batch);
      } while (this.#durableWaiting > 0 || (this.#closed && this.#pending.length > 0));
    } finally {
      this.#writing = null;
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    let size = 0;
    for (const p of batch) size += HEADER_BYTES + p.payload.length;
    const buf = Buffer.allocUnsafe(size);
    const locations: Location[] = [];
    let at = 0;
    for (const p of batch) {
      buf.writeUInt32BE(p.payload.length, at);
      buf.writeUInt32BE(crc32(p.payload), at + 4);
      p.payload.copy(buf, at + HEADER_BYTES);
      locations.push({
        segment: this.#active,
        offset: this.#position + at + HEADER_BYTES,
        length: p.payload.length,
      });
      at += HEADER_BYTES + p.payload.length;
    }
    const handle = this.#handles.get(this.#active)!;
    try {
      // O_DSYNC: each write returns once its data is on stable storage (one thread-pool trip
      // instead of a write and an fdatasync). A write may succeed short (a file-size limit, a
      // full disk): keep writing until every byte is down, so the failure surfaces as an error
      // before anything is acknowledged.
      for (let done = 0; done < size;) {
        const { bytesWritten } = await handle.write(buf, done, size - done, this.#position + done);
        if (bytesWritten === 0) throw new Error('journal write made no progress');
        done += bytesWritten;
      }
    } catch (cause) {
      // The next batch overwrites from the same position, so a partial write is never read.
      const err = new PosternError('ERR_STORE_WRITE', 'journal write failed', { cause });
      for (const p of batch) p.reject(err);
      return;
    }
    this.#position += size;
    batch.forEach((p, i) => p.resolve(locations[i]!));
    if (this.#position >= this.#opts.segmentBytes) {
      try {
        await this.#seal();
      } catch {
        // Sealing is retried after the next commit; the active segment simply grows meanwhile.
      }
    }
  }

  async #seal(): Promise<void> {
    const handle = this.#handles.get(this.#active)!;
    // Cut anything a failed write may have left past the last good record.
    await handle.truncate(this.#position);
    await handle.sync();
    await this.#startSegment(this.#active + 1);
  }

  async #startSegment(n: number): Promise<void> {
    const handle = await open(
      segmentFile(this.#dir, n),
      APPEND_FLAGS | constants.O_CREAT | constants.O_EXCL,
      PRIVATE_FILE_MODE,
    );
    this.#handles.set(n, handle);
    await fsyncDirectory(this.#dir);
    this.#active = n;
    this.#position = 0;
  }

  /** The segment new records go to. */
  async read(loc: Location): Promise<Buffer> {
    const handle = this.#handles.get(loc.segment);
    if (!handle) throw new PosternError('ERR_NOT_FOUND', `journal segment ${loc.segment} is gone`);
    const buf = Buffer.allocUnsafe(loc.length);
    const { bytesRead } = await handle.read(buf, 0, loc.length, loc.offset);
    if (bytesRead !== loc.length) {
      throw new PosternError('ERR_STORE_CORRUPT', `short read in journal segment ${loc.segment}`);
    }
    return buf;
  }

  /** Finishes in-flight commits, then closes every segment. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#pending.length > 0) this.#writing ??= this.#drain();
    while (this.#writing) await this.#writing;
    for (const handle of this.#handles.values()) await handle.close();
    this.#handles.clear();
  }
}
