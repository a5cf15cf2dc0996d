/**
 * Field readers for the admin API's JSON answers: parse, don't cast. A missing or mistyped
 * field throws a `DecodeError` naming it, instead of surfacing later as `undefined`.
 */
export type Obj = Record<string, unknown>;

export class DecodeError extends Error {
  override name = 'DecodeError';
}

export function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function obj(value: unknown, what: string): Obj {
  if (!isObj(value)) throw new DecodeError(`${what}: expected an object`);
  return value;
}

export function str(o: Obj, key: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new DecodeError(`${key}: expected a string`);
  return v;
}

/** A string, or null when the field is null or absent. */
export function optStr(o: Obj, key: string): string | null {
  const v = o[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw new DecodeError(`${key}: expected a string or null`);
  return v;
}

export function num(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number') throw new DecodeError(`${key}: expected a number`);
  return v;
}

/** A number, or null when the field is null or absent. */
export function optNum(o: Obj, key: string): number | null {
  const v = o[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number') throw new DecodeError(`${key}: expected a number or null`);
  return v;
}

export function bool(o: Obj, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw new DecodeError(`${key}: expected a boolean`);
  return v;
}

export function list<T>(o: Obj, key: string, item: (v: unknown, i: number) => T): T[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new DecodeError(`${key}: expected a list`);
  return v.map(item);
}

export function strings(o: Obj, key: string): string[] {
  return list(o, key, (v, i) => {
    if (typeof v !== 'string') throw new DecodeError(`${key}[${i}]: expected a string`);
    return v;
  });
}
