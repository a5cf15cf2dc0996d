/**
 * JSON.parse with a cost bound, for reading fields of webhook bodies (the agent's `match.json`
 * rules, the relay's `orderingKey.jsonField`). A parsed body costs several times its size in
 * memory, and nesting multiplies that (10 MB of `[` makes ~600 MB of arrays): bodies past
 * `maxBytes`, or nested deeper than `maxDepth`, are not parsed at all.
 */

export interface JsonLimits {
  /** Largest body parsed, in bytes. */
  readonly maxBytes: number;
  /** Most arrays and objects nested inside one another (`{"a":[1]}` has depth 2). */
  readonly maxDepth: number;
}

/** The limits for looking up a field in a webhook body: 1 MiB, 64 levels. */
export const JSON_LOOKUP_LIMITS: JsonLimits = Object.freeze({
  maxBytes: 1024 * 1024,
  maxDepth: 64,
});

export type BoundedJson =
  | { ok: true; value: unknown }
  /** `too_large`: over maxBytes; `too_deep`: over maxDepth; `invalid`: not JSON. */
  | { ok: false; reason: 'too_large' | 'too_deep' | 'invalid' };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * Whether no container opens deeper than `maxDepth`, brackets inside strings aside. One pass,
 * no allocation; UTF-8 continuation bytes are all ≥ 0x80, so they never look like ASCII.
 * Unbalanced input passes here and fails JSON.parse.
 */
export function depthWithin(bytes: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) {
      inString = true;
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return false;
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--;
    }
  }
  return true;
}

/** Parses `bytes` (UTF-8 JSON) only within `limits`; never throws. */
export function parseJsonBounded(bytes: Uint8Array, limits: JsonLimits): BoundedJson {
  if (bytes.length > limits.maxBytes) return { ok: false, reason: 'too_large' };
  if (!depthWithin(bytes, limits.maxDepth)) return { ok: false, reason: 'too_deep' };
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'invalid' };
  }
}

/** The value at a dotted path (`repository.full_name`) of a parsed body; undefined if absent. */
export function fieldAt(json: unknown, path: string): unknown {
  let value = json;
  for (const part of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}
