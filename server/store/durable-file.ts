/**
 * A lowdb adapter that makes every write durable: write a temp file, fsync it, rename it over
 * the document, then fsync the directory so the rename itself survives a crash. lowdb's stock
 * writer renames but never fsyncs. Concurrent writes coalesce: the latest data wins.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Adapter } from 'lowdb';
import { PosternError } from '../../shared/errors.ts';
import { PRIVATE_FILE_MODE } from './file-modes.ts';

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class DurableJsonFile<T> implements Adapter<T> {
  readonly #file: string;
  readonly #temp: string;
  readonly #parse: (value: unknown, file: string) => T;
  #writing: Promise<void> | null = null;
  #next: { data: T; waiters: { resolve: () => void; reject: (e: unknown) => void }[] } | null =
    null;

  constructor(file: string, parse: (value: unknown, file: string) => T) {
    this.#file = file;
    this.#temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
    this.#parse = parse;
  }

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new PosternError('ERR_STORE_CORRUPT', `${this.#file}: not valid JSON`, { cause: err });
    }
    return this.#parse(value, this.#file);
  }

  write(data: T): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#next) {
        this.#next.data = data;
        this.#next.waiters.push({ resolve, reject });
      } else {
        this.#next = { data, waiters: [{ resolve, reject }] };
      }
      if (!this.#writing) this.#writing = this.#drain();
    });
  }

  async #drain(): Promise<void> {
    while (this.#next) {
      const { data, waiters } = this.#next;
      this.#next = null;
      try {
        await this.#writeNow(data);
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.#writing = null;
  }

  async #writeNow(data: T): Promise<void> {
    // A fresh file every time: one left by a crash would keep its mode, and anyone who could
    // open it then would read what is written now.
    await rm(this.#temp, { force: true });
    const handle = await open(this.#temp, 'wx', PRIVATE_FILE_MODE);
    try {
      await handle.writeFile(JSON.stringify(data, null, 2));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(this.#temp, this.#file);
    await fsyncDirectory(path.dirname(this.#file));
  }
}
