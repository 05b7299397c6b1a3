/**
 * The server of `npm run bench:idempotency`, in its own process so the
 * load generator does not share its event loop: one trivial JSON route,
 * mounted bare and behind each idempotency layer, and one route that does
 * what an idempotent route is for (insert a row in PostgreSQL), bare and
 * behind the Redis and PostgreSQL stores.
 */
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { CachePersistenceLayer } from '@aws-lambda-powertools/idempotency/cache';
import { createClient } from '@redis/client';
import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import { fastifyIdempotency } from '../packages/raceguard/dist/http/fastify.js';
import { MemoryIdempotencyStore } from '../packages/raceguard/dist/idempotency/memory-store.js';
import type { IdempotencyStore } from '../packages/raceguard/dist/idempotency/store.js';
import {
  createIdempotencyTable,
  idempotentTransaction,
  PostgresIdempotencyStore,
} from '../packages/raceguard/dist/postgres/index.js';
import { RedisIdempotencyStore } from '../packages/raceguard/dist/redis/index.js';

const [redisUrl, databaseUrl] = process.argv.slice(2) as [string, string];

/** Store operations per route: each is one round trip to Redis or PostgreSQL. */
const roundTrips = new Map<string, number>();
function counted(path: string, store: IdempotencyStore): IdempotencyStore {
  const count = (): void => {
    roundTrips.set(path, (roundTrips.get(path) ?? 0) + 1);
  };
  return {
    claim: (r) => (count(), store.claim(r)),
    complete: (r) => (count(), store.complete(r)),
    renew: (r) => (count(), store.renew(r)),
    abandon: (r) => (count(), store.abandon(r)),
    advance: (r) => (count(), store.advance(r)),
  };
}

/** Powertools' layer, counting its reads and writes the same way. */
class CountedCacheLayer extends CachePersistenceLayer {
  protected override async _putRecord(...args: Parameters<CachePersistenceLayer['_putRecord']>) {
    roundTrips.set('/powertools', (roundTrips.get('/powertools') ?? 0) + 1);
    return super._putRecord(...args);
  }
  protected override async _getRecord(...args: Parameters<CachePersistenceLayer['_getRecord']>) {
    roundTrips.set('/powertools', (roundTrips.get('/powertools') ?? 0) + 1);
    return super._getRecord(...args);
  }
  protected override async _updateRecord(
    ...args: Parameters<CachePersistenceLayer['_updateRecord']>
  ) {
    roundTrips.set('/powertools', (roundTrips.get('/powertools') ?? 0) + 1);
    return super._updateRecord(...args);
  }
  protected override async _deleteRecord(
    ...args: Parameters<CachePersistenceLayer['_deleteRecord']>
  ) {
    roundTrips.set('/powertools', (roundTrips.get('/powertools') ?? 0) + 1);
    return super._deleteRecord(...args);
  }
}

const handler = (body: { n?: number }) => ({ ok: true, n: body.n ?? 0 });

const redis = new Redis(redisUrl);
// The same server through a client that pipelines the commands of one tick
// (node-redis, under Powertools' layer, does so by default).
const pipelined = new Redis(redisUrl, { enableAutoPipelining: true });
const pool = new pg.Pool({ connectionString: databaseUrl, max: 16 });
pool.on('error', () => undefined);
await createIdempotencyTable(pool, { table: 'bench_idempotency' });
await pool.query('TRUNCATE bench_idempotency');
await pool.query(
  'CREATE TABLE IF NOT EXISTS bench_orders (id bigserial PRIMARY KEY, n int NOT NULL)',
);
await pool.query('TRUNCATE bench_orders');

/** The route with real work: one INSERT, as an order or a payment record would be. */
async function insertHandler(body: { n?: number }) {
  const { rows } = await pool.query<{ id: string }>(
    'INSERT INTO bench_orders (n) VALUES ($1) RETURNING id',
    [body.n ?? 0],
  );
  return { ok: true, id: rows[0]?.id };
}

const app = Fastify();
app.post('/unprotected', (request) => handler(request.body as { n?: number }));
app.post('/unprotected-insert', (request) => insertHandler(request.body as { n?: number }));

function guarded(
  path: string,
  store: IdempotencyStore,
  route: (body: { n?: number }) => unknown = handler,
): void {
  void app.register((scope: FastifyInstance, _options, done) => {
    void scope.register(fastifyIdempotency({ store: counted(path, store), scope: () => 'bench' }));
    scope.post(path, (request) => route(request.body as { n?: number }));
    done();
  });
}
const postgresStore = new PostgresIdempotencyStore({ client: pool, table: 'bench_idempotency' });
const redisStore = new RedisIdempotencyStore({ client: redis });
// The floor of any Redis-backed layer that claims and then stores the
// response: two plain commands, no payload check, no owner, no scope.
function floor(path: string, client: Redis): void {
  app.post(path, async (request) => {
    const key = `bench-floor:${String(request.headers['idempotency-key'])}`;
    roundTrips.set(path, (roundTrips.get(path) ?? 0) + 2);
    await client.set(key, 'in-progress', 'PX', 30_000, 'NX');
    const result = handler(request.body as { n?: number });
    await client.set(key, JSON.stringify(result), 'PX', 86_400_000);
    return result;
  });
}
floor('/redis-floor', redis);
// The Redis store's own protocol without the middleware: its claim and its
// completion (owner-checked, fingerprinted, leased scripts) called by hand,
// so the gap to the floor splits into the store's share and the middleware's.
let byHand = 0;
app.post('/redis-store-by-hand', async (request) => {
  roundTrips.set('/redis-store-by-hand', (roundTrips.get('/redis-store-by-hand') ?? 0) + 2);
  const id = { scope: 'bench', key: String(request.headers['idempotency-key']) };
  const owner = `bench:${process.pid}:${++byHand}`;
  const claim = await redisStore.claim({
    ...id,
    fingerprint: 'by-hand',
    owner,
    leaseMs: 30_000,
    ttlMs: 86_400_000,
  });
  if (claim.kind !== 'claimed') throw new Error(`not claimed: ${claim.kind}`);
  const result = handler(request.body as { n?: number });
  await redisStore.complete({ ...id, owner, result: JSON.stringify(result), ttlMs: 86_400_000 });
  return result;
});
floor('/redis-floor-pipelined', pipelined);
guarded('/redis-pipelined', new RedisIdempotencyStore({ client: pipelined }));
guarded('/memory', new MemoryIdempotencyStore());
guarded('/redis', redisStore);
guarded('/postgres', postgresStore);
guarded('/redis-insert', redisStore, insertHandler);
guarded('/postgres-insert', postgresStore, insertHandler);
// Claim, insert and completion in the handler's own transaction (two round
// trips to PostgreSQL beyond the unprotected route's one: the claim, and the
// transaction of the insert and the completion).
app.post('/postgres-tx-insert', async (request) => {
  roundTrips.set('/postgres-tx-insert', (roundTrips.get('/postgres-tx-insert') ?? 0) + 2);
  const body = request.body as { n?: number };
  const { value } = await idempotentTransaction(
    pool,
    postgresStore,
    { scope: 'bench', key: String(request.headers['idempotency-key']), payload: body },
    async (tx) => {
      const { rows } = await tx.query('INSERT INTO bench_orders (n) VALUES ($1) RETURNING id', [
        body.n ?? 0,
      ]);
      return { ok: true, id: rows[0]?.id as string | undefined };
    },
  );
  return value;
});

// Powertools' Redis ("cache") persistence layer around the same handler.
const powertoolsClient = await createClient({ url: redisUrl }).connect();
const config = new IdempotencyConfig({ eventKeyJmesPath: 'key', expiresAfterSeconds: 86_400 });
// Outside Lambda there is no context; give it the remaining time a 60 s function would have.
config.registerLambdaContext({ getRemainingTimeInMillis: () => 60_000 } as Parameters<
  IdempotencyConfig['registerLambdaContext']
>[0]);
const powertools = makeIdempotent(
  (event: { key: string; body: { n?: number } }) => Promise.resolve(handler(event.body)),
  {
    persistenceStore: new CountedCacheLayer({ client: powertoolsClient }),
    config,
  },
);
app.post('/powertools', (request) =>
  powertools({
    key: String(request.headers['idempotency-key']),
    body: request.body as { n?: number },
  }),
);

app.get('/round-trips', () => Object.fromEntries(roundTrips));
// CPU time this server process has used so far, in µs (all threads).
app.get('/cpu', () => {
  const { user, system } = process.cpuUsage();
  return { us: user + system };
});

const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.send?.({ url });
// Exit cleanly when the benchmark is done (so `--cpu-prof` can write its profile).
process.on('SIGTERM', () => process.exit(0));
