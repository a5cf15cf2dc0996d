/**
 * The store contract suite (server/store/types.ts, rules 1–8): the tests every backend must
 * pass. A backend's test file calls `storeContract` with a factory of fresh stores.
 */
import { describe } from 'node:test';
import { appendClaimedTests } from './contract/append-claimed.ts';
import { claimTests } from './contract/claims.ts';
import { controlTests } from './contract/control.ts';
import { durabilityTests } from './contract/durability.ts';
import { eventTests } from './contract/events.ts';
import { feedTests } from './contract/feed.ts';
import { listTests } from './contract/lists.ts';
import { orderedTests } from './contract/ordered.ts';
import { searchTests } from './contract/search.ts';
import { sharedTests } from './contract/shared.ts';
import { statsTests } from './contract/stats.ts';
import type { Backend } from './contract/support.ts';

export type { Backend, BackendInstance } from './contract/support.ts';

/** Registers the contract's tests for `backend`, in one group named `name`. */
export function storeContract(name: string, backend: Backend): void {
  describe(`store contract: ${name}`, () => {
    eventTests(backend);
    listTests(backend);
    searchTests(backend);
    claimTests(backend);
    appendClaimedTests(backend);
    orderedTests(backend);
    feedTests(backend);
    controlTests(backend);
    durabilityTests(backend);
    sharedTests(backend);
    statsTests(backend);
  });
}
