/**
 * Database URLs: the password is a secret, so no log line or error message may carry it.
 * `redactUrl` is the only way a URL is shown; `redactSecrets` scrubs a message that may quote it.
 */

const MASK = '***';

/** The URL with its password (userinfo or `password=` parameter) replaced by `***`. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // Not a URL we can parse: hide anything between `:` and `@` of an authority, and parameters.
    return url
      .replace(/(\/\/[^/:@]*:)[^@/]*@/, `$1${MASK}@`)
      .replace(/(password=)[^&]*/gi, `$1${MASK}`);
  }
  if (parsed.password !== '') parsed.password = MASK;
  for (const key of [...parsed.searchParams.keys()]) {
    if (key.toLowerCase() === 'password') parsed.searchParams.set(key, MASK);
  }
  // URL keeps `***` percent-encoded in the search part: show it plainly.
  return parsed.toString().replaceAll('%2A%2A%2A', MASK);
}

/** The secrets a URL holds (its password, raw and decoded), to scrub from messages. */
export function urlSecrets(url: string): string[] {
  const out = new Set<string>();
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') {
      out.add(parsed.password);
      out.add(decodeURIComponent(parsed.password));
    }
    for (const [key, value] of parsed.searchParams) {
      if (key.toLowerCase() === 'password' && value !== '') out.add(value);
    }
  } catch {
    // An unparsable URL: nothing more to learn from it; redactUrl still masks its shape.
  }
  return [...out].filter((s) => s.length > 0);
}

/** `message` with every secret of `url`, and the URL itself, masked. */
export function redactSecrets(message: string, url: string): string {
  let out = message.replaceAll(url, redactUrl(url));
  for (const secret of urlSecrets(url)) out = out.replaceAll(secret, MASK);
  return out;
}
