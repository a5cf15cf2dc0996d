/** The store contract suite on the PostgreSQL store, one database per store. */
import { PostgresStore } from '../../server/store/postgres/store.ts';
import { createDatabase, dropDatabase, randomDatabaseName } from '../helpers/postgres.ts';
import { storeContract } from './contract.ts';

const base = randomDatabaseName('postern_contract');
let next = 0;

async function openStore(url: string): Promise<PostgresStore> {
  const store = new PostgresStore({ url, poolSize: 4 });
  await store.open();
  return store;
}

storeContract('postgres', {
  // Claims are rows in the shared database: they outlive a store instance, until their lease.
  claimsSurviveReopen: true,
  async create() {
    const name = `${base}_${++next}`;
    const url = await createDatabase(name);
    let store = await openStore(url);
    return {
      store,
      async reopen() {
        await store.close();
        store = await openStore(url);
        return store;
      },
      async destroy() {
        await store.close();
        await dropDatabase(name);
      },
    };
  },
});
