/** The store contract suite on the embedded store (lowdb + LMDB), one data dir per store. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EmbeddedStore } from '../../server/store/embedded.ts';
import { storeContract } from './contract.ts';

async function openStore(dataDir: string): Promise<EmbeddedStore> {
  const store = new EmbeddedStore({ dataDir });
  await store.open();
  return store;
}

storeContract('embedded', {
  // One relay per data dir: the store forgets every claim on open.
  claimsSurviveReopen: false,
  async create() {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'postern-contract-'));
    let store = await openStore(dataDir);
    return {
      store,
      async reopen() {
        await store.close();
        store = await openStore(dataDir);
        return store;
      },
      async destroy() {
        await store.close();
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  },
});
