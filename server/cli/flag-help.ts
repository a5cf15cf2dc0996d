/** The help text of the admin commands' flags. */
import type { Flags } from '../../shared/cli.ts';

export const FLAG_HELP: Record<string, string> = {
  relay: 'relay to talk to (POSTERN_RELAY_URL, default http://localhost:8080)',
  'token-file':
    'file holding the admin token (POSTERN_ADMIN_TOKEN_FILE); or the token in POSTERN_ADMIN_TOKEN; default <data-dir>/admin-token',
  'data-dir': 'where that default file is (POSTERN_DATA_DIR, default ./data)',
  token: 'the token itself: visible to every local user in the process list',
  json: 'print JSON only (the API answer) instead of tables',
  verify:
    'PROVIDER: github, stripe, slack, shopify, twilio, standard-webhooks, with --secret-file (meta, hmac: use the API)',
  'secret-file': "file holding the provider's secret",
  secret: "the provider's secret itself (visible in the process list)",
  'sync-timeout-ms': "N: sync channel, hold the provider's request up to N ms",
  async: 'back to async',
  'retry-delays': 'MS,MS,…: the retry schedule',
  ordered: 'one event in flight at a time, in arrival order',
  unordered: 'events in parallel',
  'ordering-key': 'header:NAME | json:PATH: order per key',
  'rate-limit': 'PER_SECOND[/BURST]',
  'max-body-bytes': 'N: larger bodies get 413',
  methods: "M,M,… | default: HTTP methods taken (default: the provider's, or any)",
  paths: '/a,/b/*,… | any: path suffixes taken ("" item: none; /x/*: a prefix)',
  channel: 'ID|NAME (repeat for several)',
  status: 'queued, delivering, delivered, failed, rejected, filtered',
  limit: 'N: events per page (1 to 500, default 50)',
  before: 'ID: the page after this event (as printed under the table)',
  since: 'T: received at or after (ISO 8601; events list: or ms since the epoch)',
  until: 'T: received before (ISO 8601; events list: or ms since the epoch)',
  search: "TEXT: an event id, or text in the requests' header values and bodies (any case)",
  raw: 'print the body exactly as received (bytes, nothing else)',
};

/** Flags as help lines: `--name V` and what it does. */
export function flagLines(flags: Flags): string {
  return Object.entries(flags)
    .map(([name, f]) => {
      const left = `    --${name}${f.type === 'string' ? ' V' : ''}`;
      return `${left.padEnd(24)} ${FLAG_HELP[name] ?? ''}`.trimEnd();
    })
    .join('\n');
}
