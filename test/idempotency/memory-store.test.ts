import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import { IdempotencyStoreError } from '../../packages/raceguard/src/idempotency/errors.js';
import { idempotent } from '../../packages/raceguard/src/idempotency/idempotent.js';
import { MemoryIdempotencyStore } from '../../packages/raceguard/src/idempotency/memory-store.js';
import type { IdempotencyStore } from '../../packages/raceguard/src/idempotency/store.js';
import { storeContract } from './store-contract.js';

describe('MemoryIdempotencyStore', () => {
  const store = new MemoryIdempotencyStore();
  storeContract(
    () => store,
    (extra) => new MemoryIdempotencyStore(extra),
  );

  it('drops expired records', async () => {
    const small = new MemoryIdempotencyStore();
    await idempotent(small, { scope: 's', key: 'k', ttlMs: 50, leaseMs: 50 }, () => 1);
    assert.equal(small.size, 1);
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(small.size, 0);
  });
});

describe('idempotent() input and store failures', () => {
  const store = new MemoryIdempotencyStore();
  const broken: IdempotencyStore = {
    claim: () => Promise.reject(new Error('connection refused')),
    complete: () => Promise.reject(new Error('connection refused')),
    renew: () => Promise.reject(new Error('connection refused')),
    abandon: () => Promise.reject(new Error('connection refused')),
    advance: () => Promise.reject(new Error('connection refused')),
  };

  it('refuses bad arguments before doing anything', async () => {
    let runs = 0;
    const handler = () => {
      runs += 1;
      return 1;
    };
    await assert.rejects(idempotent(store, { scope: '', key: 'k' }, handler), InvalidArgumentError);
    await assert.rejects(idempotent(store, { scope: 's', key: '' }, handler), /must not be empty/);
    await assert.rejects(
      idempotent(store, { scope: 's', key: 'k'.repeat(256) }, handler),
      /at most 255/,
    );
    await assert.rejects(
      idempotent(store, { scope: 's', key: 'ключ' }, handler),
      /printable ASCII/,
    );
    await assert.rejects(
      idempotent(store, { scope: 's', key: 'k', leaseMs: 0 }, handler),
      InvalidArgumentError,
    );
    await assert.rejects(
      idempotent(store, { scope: 's', key: 'k', ttlMs: 10, leaseMs: 100 }, handler),
      /ttlMs/,
    );
    await assert.rejects(
      idempotent({} as IdempotencyStore, { scope: 's', key: 'k' }, handler),
      /IdempotencyStore/,
    );
    assert.equal(runs, 0);
  });

  it('fails closed by default: the handler does not run unprotected', async () => {
    let runs = 0;
    const error = await idempotent(broken, { scope: 's', key: 'k' }, () => (runs += 1)).catch(
      (e: unknown) => e,
    );
    assert.ok(error instanceof IdempotencyStoreError);
    assert.equal(error.code, 'RACEGUARD_IDEMPOTENCY_STORE_UNAVAILABLE');
    assert.equal(error.operation, 'claim');
    assert.match(String((error.cause as Error).message), /connection refused/);
    assert.equal(runs, 0);
  });

  it('fails open when asked: the handler runs, unprotected', async () => {
    const result = await idempotent(broken, { scope: 's', key: 'k', failOpen: true }, () => 'ran');
    assert.deepEqual(result, { value: 'ran', replayed: false });
  });
});
