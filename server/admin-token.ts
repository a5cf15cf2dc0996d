/**
 * The admin token: taken from POSTERN_ADMIN_TOKEN, or generated on first start and written
 * once to `<data-dir>/admin-token` (mode 0600); relays sharing a database share the first one. Only its SHA-256 is stored; requests are
 * checked by hashing what they present and comparing in constant time. The token is a
 * 256-bit random value, so a fast hash is enough (no password stretching needed).
 */
import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { constantTimeEqual } from '../shared/signing.ts';
import { PRIVATE_FILE_MODE } from './store/file-modes.ts';
import type { ControlCache } from './control-cache.ts';

export const ADMIN_TOKEN_FILE = 'admin-token';

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

export interface AdminTokenCheck {
  /** Whether an `Authorization` header carries the admin token. */
  accepts(authorization: string | undefined): boolean;
  /** Where a generated token was written, when it was generated on this start. */
  writtenTo: string | null;
}

export async function setUpAdminToken(
  control: ControlCache,
  dataDir: string,
  fromEnv: string | null,
): Promise<AdminTokenCheck> {
  let hash: string;
  let writtenTo: string | null = null;
  if (fromEnv !== null) {
    hash = sha256Hex(fromEnv);
  } else if (control.state.adminTokenHash) {
    hash = control.state.adminTokenHash;
  } else {
    const token = `pat_${randomBytes(32).toString('base64url')}`;
    writtenTo = path.join(dataDir, ADMIN_TOKEN_FILE);
    // A new file (mode 0600 whatever the umask): one left over keeps its mode and readers.
    await rm(writtenTo, { force: true });
    await writeFile(writtenTo, `${token}\n`, { mode: PRIVATE_FILE_MODE, flag: 'wx' });
    const generated = sha256Hex(token);
    // Set only if still unset: of relays on one database starting together, the first to
    // store its token wins, and the others use that one (and drop the file they wrote).
    let won = false;
    let stored: string | null = null;
    await control.update((s) => {
      if (!s.adminTokenHash) {
        s.adminTokenHash = generated;
        won = true;
      }
      stored = s.adminTokenHash;
    });
    hash = won ? generated : (stored ?? generated);
    if (!won) {
      await rm(writtenTo, { force: true });
      writtenTo = null;
    }
  }
  const expected = Buffer.from(hash, 'hex');
  return {
    writtenTo,
    accepts(authorization) {
      const token = /^Bearer (\S+)$/.exec(authorization ?? '')?.[1];
      if (!token) return false;
      return constantTimeEqual(Buffer.from(sha256Hex(token), 'hex'), expected);
    },
  };
}
