/**
 * How an event body is shown: pretty-printed when it is JSON, as text when it is UTF-8, and
 * as a hex dump otherwise. Very large bodies are cut, so the page stays responsive.
 */

export type BodyView =
  | { kind: 'empty' }
  | { kind: 'json'; text: string }
  | { kind: 'text'; text: string; truncated: boolean }
  | { kind: 'binary'; dump: string; truncated: boolean };

const MAX_TEXT_CHARS = 1024 * 1024;
const MAX_DUMP_BYTES = 64 * 1024;
/** Control characters that do not occur in text (tab, newlines and form feed are allowed). */
const BINARY_CONTROL = /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/;

export function base64ToBytes(base64: string): Uint8Array<ArrayBuffer> {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function looksLikeJson(text: string, contentType: string): boolean {
  if (/\bjson\b|\+json/i.test(contentType)) return true;
  const start = text.trimStart()[0];
  return start === '{' || start === '[';
}

export function viewBody(bytes: Uint8Array, contentType = ''): BodyView {
  if (bytes.length === 0) return { kind: 'empty' };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return binary(bytes);
  }
  if (BINARY_CONTROL.test(text)) return binary(bytes);
  if (looksLikeJson(text, contentType) && text.length <= MAX_TEXT_CHARS) {
    try {
      return { kind: 'json', text: JSON.stringify(JSON.parse(text), null, 2) };
    } catch {
      // not JSON after all: shown as text
    }
  }
  return {
    kind: 'text',
    text: text.length > MAX_TEXT_CHARS ? text.slice(0, MAX_TEXT_CHARS) : text,
    truncated: text.length > MAX_TEXT_CHARS,
  };
}

function binary(bytes: Uint8Array): BodyView {
  return {
    kind: 'binary',
    dump: hexDump(bytes.subarray(0, MAX_DUMP_BYTES)),
    truncated: bytes.length > MAX_DUMP_BYTES,
  };
}

/** `hexdump -C` style: offset, 16 bytes in hex, then the printable ASCII. */
export function hexDump(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += 16) {
    const row = bytes.subarray(offset, offset + 16);
    let hex = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      const b = row[i];
      hex += (b === undefined ? '  ' : b.toString(16).padStart(2, '0')) + (i === 7 ? '  ' : ' ');
      if (b !== undefined) ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
    }
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  return lines.join('\n');
}
