/**
 * Field readers for untrusted JSON objects. Each one checks a single field and throws through
 * the `fail` callback the caller passes, so the same readers serve frames and config files.
 */
export type Fail = (field: string, expected: string) => never;

export type Obj = Record<string, unknown>;

export function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function readString(
  obj: Obj,
  key: string,
  fail: Fail,
  opts: { max?: number; min?: number } = {},
): string {
  const value = obj[key];
  const max = opts.max ?? 4096;
  const min = opts.min ?? 0;
  if (typeof value !== 'string' || value.length < min || value.length > max) {
    fail(key, `a string of ${min}–${max} characters`);
  }
  return value;
}

export function readOptionalString(
  obj: Obj,
  key: string,
  fail: Fail,
  opts: { max?: number; min?: number } = {},
): string | undefined {
  return obj[key] === undefined ? undefined : readString(obj, key, fail, opts);
}

export function readInt(obj: Obj, key: string, fail: Fail, min: number, max: number): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(key, `an integer from ${min} to ${max}`);
  }
  return value;
}

export function readOptionalInt(
  obj: Obj,
  key: string,
  fail: Fail,
  min: number,
  max: number,
): number | undefined {
  return obj[key] === undefined ? undefined : readInt(obj, key, fail, min, max);
}

export function readBoolean(obj: Obj, key: string, fail: Fail): boolean {
  const value = obj[key];
  if (typeof value !== 'boolean') fail(key, 'true or false');
  return value;
}

export function readEnum<T extends string>(
  obj: Obj,
  key: string,
  values: readonly T[],
  fail: Fail,
): T {
  const value = obj[key];
  if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
    fail(key, `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`);
  }
  return value as T;
}

/** A list of `[name, value]` string pairs, as HTTP headers travel in frames. */
export function readHeaderPairs(
  obj: Obj,
  key: string,
  fail: Fail,
  maxPairs: number,
): [string, string][] {
  const value = obj[key];
  if (!Array.isArray(value) || value.length > maxPairs) {
    fail(key, `a list of at most ${maxPairs} [name, value] pairs`);
  }
  for (const pair of value) {
    if (
      !Array.isArray(pair) ||
      pair.length !== 2 ||
      typeof pair[0] !== 'string' ||
      typeof pair[1] !== 'string' ||
      pair[0].length === 0
    ) {
      fail(key, 'a list of [name, value] string pairs');
    }
  }
  return value as [string, string][];
}
