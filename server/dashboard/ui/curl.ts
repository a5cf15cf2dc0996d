/**
 * "Copy as curl": a shell command that sends an event's request again, to the URL the provider
 * called, with its headers and exact body. Everything is single-quoted for a POSIX shell, so
 * nothing in a header or body is ever run by the shell that pastes it.
 */

/** Headers curl sets itself, or that would not describe the new request. */
const SKIPPED = new Set(['host', 'content-length', 'connection', 'transfer-encoding', 'expect']);

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command; `bodyText` is the body when it is text, null when it is binary (then the body
 * is read from the file the "Download body" button saves, named `bodyFile`).
 */
export function curlCommand(e: {
  method: string;
  url: string;
  headers: [string, string][];
  bodyText: string | null;
  bodyBytes: number;
  bodyFile: string;
}): string {
  const parts = ['curl', '-X', shellQuote(e.method), shellQuote(e.url)];
  for (const [name, value] of e.headers) {
    if (SKIPPED.has(name.toLowerCase())) continue;
    parts.push('-H', shellQuote(`${name}: ${value}`));
  }
  if (e.bodyBytes > 0) {
    parts.push(
      '--data-binary',
      e.bodyText === null ? shellQuote(`@${e.bodyFile}`) : shellQuote(e.bodyText),
    );
  }
  return parts.join(' ');
}

/** The file name "Download body" uses: the event id, with an extension from the content type. */
export function bodyFileName(id: string, contentType: string): string {
  const ext = /\bjson\b|\+json/i.test(contentType)
    ? 'json'
    : /^text\/|xml|x-www-form-urlencoded/i.test(contentType)
      ? 'txt'
      : 'bin';
  return `${id.replace(/[^A-Za-z0-9_-]/g, '_')}.${ext}`;
}

/** Bodies larger than this are read from the downloaded file, not put in the command. */
const MAX_INLINE_BYTES = 64 * 1024;
/** Characters a shell argument cannot hold (NUL) or that mark binary data. */
const NOT_TEXT = /[\u0000-\u0008\u000b\u000e-\u001f\u007f]/;

/** The body as text for the command line, or null when it must come from a file. */
export function inlineBodyText(bytes: Uint8Array): string | null {
  if (bytes.length > MAX_INLINE_BYTES) return null;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
  return NOT_TEXT.test(text) ? null : text;
}
