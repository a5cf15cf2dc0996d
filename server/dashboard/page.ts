/** The dashboard's one HTML page and the headers that lock it down. */
import type { DashboardAssets } from './types.ts';

/**
 * Scripts and styles only from the relay itself, no inline code, no framing. The admin token
 * lives in this page's sessionStorage, so nothing foreign may ever run here.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  // Always revalidated, so a new release's asset hashes are picked up at once.
  'Cache-Control': 'no-cache',
};

/** Asset URLs are relative, so the page also works behind a proxy that mounts it on a prefix. */
export function pageHtml(assets: DashboardAssets): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Postern</title>
<link rel="icon" href="${assets.icon.path}" type="image/svg+xml">
<link rel="stylesheet" href="${assets.style.path}">
<script type="module" src="${assets.script.path}"></script>
</head>
<body>
<div id="app"><noscript>The Postern dashboard needs JavaScript.</noscript></div>
</body>
</html>
`;
}
