/**
 * Checks the admin API's answers against docs/openapi.json. The validator knows the part of
 * JSON Schema 2020-12 the document uses, and refuses a schema with any other keyword rather than
 * pass it unchecked: a keyword it ignored would make every answer look valid.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const OPENAPI_FILE = path.join(ROOT, 'docs/openapi.json');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Schema = { [key: string]: Json };

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Schema>; responses: Record<string, Json> };
}

export function loadOpenApi(): OpenApiDocument {
  return JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as OpenApiDocument;
}

/** Keywords that only describe: nothing to check. */
const ANNOTATIONS = new Set([
  'description',
  'title',
  'default',
  'examples',
  'deprecated',
  'readOnly',
  'writeOnly',
  'contentEncoding',
]);
const CHECKED = new Set([
  '$ref',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'items',
  'prefixItems',
  'minItems',
  'maxItems',
  'enum',
  'const',
  'oneOf',
  'anyOf',
  'allOf',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'if',
  'then',
  'else',
]);

const isObject = (v: unknown): v is Record<string, Json> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function deepEqual(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Throws if `schema`, or any schema inside it, uses a keyword this validator does not check. */
export function assertSupported(schema: Json, at = '$'): void {
  if (schema === true) return;
  if (!isObject(schema)) throw new Error(`${at}: not a schema: ${JSON.stringify(schema)}`);
  for (const [key, v] of Object.entries(schema)) {
    if (!CHECKED.has(key) && !ANNOTATIONS.has(key)) {
      throw new Error(`schema keyword "${key}" is not supported by this validator (at ${at})`);
    }
    if (key === 'format' && v !== 'date-time' && v !== 'uri') {
      throw new Error(`format "${String(v)}" is not supported by this validator (at ${at})`);
    }
  }
  if (isObject(schema['properties'])) {
    for (const [k, v] of Object.entries(schema['properties'])) assertSupported(v, `${at}.${k}`);
  }
  if (isObject(schema['additionalProperties'])) {
    assertSupported(schema['additionalProperties'], `${at}.*`);
  }
  if (schema['items'] !== undefined) assertSupported(schema['items'], `${at}[]`);
  for (const key of ['if', 'then', 'else']) {
    if (schema[key] !== undefined) assertSupported(schema[key], `${at}.${key}`);
  }
  for (const list of ['prefixItems', 'oneOf', 'anyOf', 'allOf']) {
    const l = schema[list];
    if (Array.isArray(l)) l.forEach((s, i) => assertSupported(s, `${at}.${list}[${i}]`));
  }
}

/** Every way `value` breaks `schema`, as `<json path>: <what>` lines (none: valid). */
export function validate(
  doc: OpenApiDocument,
  schema: Json,
  value: unknown,
  at = '$',
  depth = 0,
): string[] {
  if (depth > 64) return [`${at}: schema nesting too deep`];
  if (schema === true) return [];
  if (!isObject(schema)) throw new Error(`${at}: not a schema: ${JSON.stringify(schema)}`);
  for (const key of Object.keys(schema)) {
    if (!CHECKED.has(key) && !ANNOTATIONS.has(key)) {
      throw new Error(`schema keyword "${key}" is not supported by this validator (at ${at})`);
    }
  }
  const errors: string[] = [];
  const sub = (s: Json, v: unknown, p: string) => validate(doc, s, v, p, depth + 1);
  if (typeof schema['$ref'] === 'string') {
    const name = /^#\/components\/schemas\/([A-Za-z0-9_]+)$/.exec(schema['$ref'])?.[1];
    const target = name === undefined ? undefined : doc.components.schemas[name];
    if (target === undefined) throw new Error(`${at}: unresolved $ref ${schema['$ref']}`);
    errors.push(...sub(target, value, at));
  }
  const type = schema['type'];
  if (type !== undefined) {
    const types = Array.isArray(type) ? type : [type];
    const actual = typeOf(value);
    const ok = types.includes(actual) || (actual === 'integer' && types.includes('number'));
    if (!ok) return [...errors, `${at}: expected ${types.join(' or ')}, got ${actual}`];
  }
  if (schema['enum'] !== undefined && Array.isArray(schema['enum'])) {
    if (!schema['enum'].some((e) => deepEqual(e, value))) {
      errors.push(
        `${at}: expected one of ${JSON.stringify(schema['enum'])}, got ${JSON.stringify(value)}`,
      );
    }
  }
  if ('const' in schema && !deepEqual(schema['const'], value)) {
    errors.push(`${at}: expected ${JSON.stringify(schema['const'])}`);
  }
  if (Array.isArray(schema['allOf'])) {
    for (const part of schema['allOf']) errors.push(...sub(part, value, at));
  }
  for (const combo of ['oneOf', 'anyOf'] as const) {
    const options = schema[combo];
    if (!Array.isArray(options)) continue;
    const passing = options.filter((o) => sub(o, value, at).length === 0).length;
    if (combo === 'oneOf' ? passing !== 1 : passing === 0) {
      const detail = options.map((o, i) => `[${i}] ${sub(o, value, at).join('; ')}`).join(' | ');
      errors.push(`${at}: ${combo} matched ${passing} of ${options.length} (${detail})`);
    }
  }
  if (schema['if'] !== undefined) {
    const branch = sub(schema['if'], value, at).length === 0 ? schema['then'] : schema['else'];
    if (branch !== undefined) errors.push(...sub(branch, value, at));
  }
  if (typeof value === 'number') {
    const min = schema['minimum'];
    const max = schema['maximum'];
    if (typeof min === 'number' && value < min) errors.push(`${at}: ${value} < ${min}`);
    if (typeof max === 'number' && value > max) errors.push(`${at}: ${value} > ${max}`);
  }
  if (typeof value === 'string') {
    const minLength = schema['minLength'];
    const maxLength = schema['maxLength'];
    if (typeof minLength === 'number' && value.length < minLength) {
      errors.push(`${at}: shorter than ${minLength}`);
    }
    if (typeof maxLength === 'number' && value.length > maxLength) {
      errors.push(`${at}: longer than ${maxLength}`);
    }
    if (typeof schema['pattern'] === 'string' && !new RegExp(schema['pattern'], 'u').test(value)) {
      errors.push(`${at}: ${JSON.stringify(value)} does not match ${schema['pattern']}`);
    }
    const format = schema['format'];
    if (format === 'date-time') {
      if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value)) {
        errors.push(`${at}: not an RFC 3339 date-time: ${JSON.stringify(value)}`);
      }
    } else if (format === 'uri') {
      if (!URL.canParse(value)) errors.push(`${at}: not a URI: ${JSON.stringify(value)}`);
    } else if (format !== undefined) {
      throw new Error(`format "${String(format)}" is not supported by this validator (at ${at})`);
    }
  }
  if (Array.isArray(value)) {
    const minItems = schema['minItems'];
    const maxItems = schema['maxItems'];
    if (typeof minItems === 'number' && value.length < minItems) {
      errors.push(`${at}: fewer than ${minItems} items`);
    }
    if (typeof maxItems === 'number' && value.length > maxItems) {
      errors.push(`${at}: more than ${maxItems} items`);
    }
    const prefix = Array.isArray(schema['prefixItems']) ? schema['prefixItems'] : [];
    value.forEach((item, i) => {
      const itemSchema = i < prefix.length ? prefix[i] : schema['items'];
      if (itemSchema !== undefined) errors.push(...sub(itemSchema, item, `${at}[${i}]`));
    });
  }
  if (isObject(value)) {
    const props = isObject(schema['properties']) ? schema['properties'] : {};
    const required = Array.isArray(schema['required']) ? schema['required'] : [];
    for (const key of required) {
      if (typeof key === 'string' && !(key in value)) errors.push(`${at}: missing "${key}"`);
    }
    for (const [key, v] of Object.entries(value)) {
      const p = props[key];
      if (p !== undefined) errors.push(...sub(p, v, `${at}.${key}`));
      else if (schema['additionalProperties'] === false) {
        errors.push(`${at}: unexpected field "${key}"`);
      } else if (isObject(schema['additionalProperties'])) {
        errors.push(...sub(schema['additionalProperties'], v, `${at}.${key}`));
      }
    }
  }
  return errors;
}

/** The document's path template (`/api/events/{id}`) that a concrete path matches. */
export function matchPath(doc: OpenApiDocument, concrete: string): string | undefined {
  const segs = concrete.split('/');
  // Literal paths first: `/api/events/replay` is not `/api/events/{id}`.
  const templates = Object.keys(doc.paths).sort(
    (a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0),
  );
  return templates.find((t) => {
    const parts = t.split('/');
    return (
      parts.length === segs.length &&
      parts.every((p, i) => (p.startsWith('{') ? segs[i] !== '' : p === segs[i]))
    );
  });
}

/** Follows a `#/components/responses/X` reference. */
function responseObject(doc: OpenApiDocument, r: Json): Record<string, Json> {
  if (isObject(r) && typeof r['$ref'] === 'string') {
    const name = /^#\/components\/responses\/([A-Za-z0-9_]+)$/.exec(r['$ref'])?.[1];
    const target = name === undefined ? undefined : doc.components.responses[name];
    if (!isObject(target)) throw new Error(`unresolved response $ref ${r['$ref']}`);
    return target;
  }
  if (!isObject(r)) throw new Error('not a response object');
  return r;
}

/**
 * Throws unless the answer (status and body text) to `method` on `target` is one the document
 * describes: the operation exists, lists the status, and the body fits the JSON schema (or is
 * empty when no content is described).
 */
export function checkAnswer(
  doc: OpenApiDocument,
  method: string,
  target: string,
  status: number,
  text: string,
): void {
  const pathname = new URL(target, 'http://x').pathname;
  const template = matchPath(doc, pathname);
  const what = `${method} ${pathname} → ${status}`;
  if (template === undefined) throw new Error(`${what}: the OpenAPI document has no such path`);
  const operation = doc.paths[template]![method.toLowerCase()];
  if (!isObject(operation)) throw new Error(`${what}: the OpenAPI document has no such operation`);
  const responses = operation['responses'];
  const listed = isObject(responses)
    ? (responses[String(status)] ?? responses['default'])
    : undefined;
  if (listed === undefined) throw new Error(`${what}: status not in the OpenAPI document`);
  const response = responseObject(doc, listed);
  const content = response['content'];
  if (!isObject(content)) {
    if (text !== '') throw new Error(`${what}: a body where the document describes none`);
    return;
  }
  const media = content['application/json'];
  if (!isObject(media)) return; // e.g. text/event-stream: not JSON
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${what}: not JSON: ${text.slice(0, 200)}`);
  }
  const errors = validate(doc, media['schema'] ?? true, value);
  if (errors.length > 0) {
    throw new Error(
      `${what}: answer does not match the OpenAPI document:\n  ${errors.join('\n  ')}`,
    );
  }
}
