/**
 * The lease cache beside a raw Redis GET and the popular caches, side by
 * side in one run, on a throwaway redis-server:
 *
 * - `hit`: 64 workers reading 1,000 warm keys; the baseline is a raw ioredis
 *   `GET` + `JSON.parse`, the floor of any Redis cache read (and the same
 *   with ioredis' auto-pipelining, which node-redis does by default);
 * - `herd`: 500 concurrent reads of one cold key with a 50 ms loader, from
 *   one process; `loaderCalls` is how many times the loader ran;
 * - `write-heavy`: 32 readers on one instance and 4 writers on another (two
 *   services sharing Redis) over 100 keys of a PostgreSQL table, with a slow
 *   loader (0-20 ms after its SELECT); a writer bumps the row's version, then
 *   invalidates through the library. A read is stale when it returns a
 *   version older than one whose writer had already returned when the read
 *   began: `staleReads`. After the run, each key is read once more:
 *   `staleKept` keys still serve an old version (a stale set that stays).
 *
 * The in-process tiers (raceguard's `local`, bentocache's L1) read from
 * memory; their ratio to the raw GET is the point of having one.
 *
 *   npm run bench:cache [-- --duration-ms 2000 --rounds 3 --json]
 */
import { parseArgs } from 'node:util';
import { BentoCache, bentostore } from 'bentocache';
import { redisBusDriver, redisDriver } from 'bentocache/drivers/redis';
import { memoryDriver } from 'bentocache/drivers/memory';
import pg from 'pg';
import { createCache as createCacheManager } from 'cache-manager';
import KeyvRedis from '@keyv/redis';
import { Keyv } from 'keyv';
import { Redis } from 'ioredis';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import { LeaseCache } from '../packages/raceguard/dist/cache/index.js';
import { createScratchSchema, startRedisServer } from '../packages/raceguard/dist/testing/index.js';
import { median } from './stats.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
const WORKERS = 64;
const KEYS = 1000;
const log = (line: string): void => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

const server = await startRedisServer();
const connect = (autoPipelining = false): Redis => {
  const client = new Redis(server.url, { enableAutoPipelining: autoPipelining });
  client.on('error', () => undefined);
  return client;
};

interface Reader {
  read(key: string, load: () => Promise<unknown>): Promise<unknown>;
  invalidate?(key: string): Promise<unknown>;
  /** Resolves once the reader serves at full speed (an in-process tier's bus is subscribed). */
  ready?: Promise<void>;
  close(): Promise<unknown>;
}

/** A LeaseCache on its own connections; with `local`, resolved once its tier is up. */
function leaseCache(options: { local: boolean; autoPipelining?: boolean }): Reader {
  const client = connect(options.autoPipelining ?? false);
  const subscriber = connect();
  let up: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (up = resolve));
  const cache = new LeaseCache({
    client,
    subscriber,
    prefix: 'rg:',
    ...(options.local && { local: {} }),
    onEvent: (e) => {
      if (e.type === 'local-tier' && e.state === 'up') up();
    },
  });
  if (!options.local) up();
  return {
    read: (key, l) => cache.get(key, l),
    invalidate: (key) => cache.invalidate(key),
    ready,
    close: async () => {
      await cache.close();
      client.disconnect();
      subscriber.disconnect();
    },
  };
}

function bento(l1: boolean): Reader {
  const client = connect();
  const store = bentostore();
  if (l1) store.useL1Layer(memoryDriver({}));
  store.useL2Layer(redisDriver({ connection: client, prefix: 'bento' }));
  if (l1) store.useBus(redisBusDriver({ connection: { host: '127.0.0.1', port: server.port } }));
  const cache = new BentoCache({ default: 'cache', stores: { cache: store } });
  return {
    read: (key, l) => cache.getOrSet({ key, factory: l, ttl: '1h' }),
    invalidate: (key) => cache.delete({ key }),
    close: () => cache.disconnectAll(),
  };
}

const value = { price: 1999, currency: 'EUR', name: 'a product', stock: 12 };
const load = (): Promise<unknown> => Promise.resolve(value);

function readers(): Record<string, () => Reader> {
  return {
    'raw-get': () => {
      const client = connect();
      return {
        read: async (key) => JSON.parse((await client.get(`raw:${key}`)) ?? 'null') as unknown,
        close: () => Promise.resolve(client.disconnect()),
      };
    },
    raceguard: () => leaseCache({ local: false }),
    'raceguard (local tier)': () => leaseCache({ local: true }),
    // The same two over an ioredis client that pipelines the commands of one tick
    // (node-redis, under @keyv/redis, does so by default).
    'raw-get (autopipeline)': () => {
      const client = connect(true);
      return {
        read: async (key) => JSON.parse((await client.get(`raw:${key}`)) ?? 'null') as unknown,
        close: () => Promise.resolve(client.disconnect()),
      };
    },
    'raceguard (autopipeline)': () => leaseCache({ local: false, autoPipelining: true }),
    'bentocache-l2': () => bento(false),
    'bentocache-l1+l2': () => bento(true),
    'cache-manager': () => {
      const cache = createCacheManager({
        stores: [new Keyv({ store: new KeyvRedis(server.url), namespace: 'cm' })],
      });
      return {
        read: (key, l) => cache.wrap(key, l, 3_600_000),
        invalidate: (key) => cache.del(key),
        close: () => cache.disconnect(),
      };
    },
  };
}

async function measureHit(make: () => Reader): Promise<{ opsPerSec: number; p99Ms: number }> {
  const reader = make();
  await reader.ready;
  // Warm every key through the library itself (and the raw keys by SET).
  const warm = connect();
  for (let k = 0; k < KEYS; k++) {
    await warm.set(`raw:k${k}`, JSON.stringify(value));
    await reader.read(`k${k}`, load);
  }
  warm.disconnect();
  const latencies: number[] = [];
  let done = 0;
  const started = performance.now();
  const until = started + durationMs;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, w) => {
      let i = w;
      while (performance.now() < until) {
        const t = performance.now();
        await reader.read(`k${i % KEYS}`, load);
        latencies.push(performance.now() - t);
        done++;
        i += WORKERS;
      }
    }),
  );
  const elapsed = performance.now() - started;
  await reader.close();
  return { opsPerSec: (done / elapsed) * 1000, p99Ms: percentile(latencies, 99) };
}

async function measureHerd(make: () => Reader, key: string): Promise<number> {
  const reader = make();
  await reader.ready;
  let calls = 0;
  await Promise.all(
    Array.from({ length: 500 }, () =>
      reader.read(key, async () => {
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 50));
        return value;
      }),
    ),
  );
  await reader.close();
  return calls;
}

interface Result {
  library: string;
  scenario: string;
  opsPerSec: number | null;
  p99Ms: number | null;
  loaderCalls: number | null;
  staleReads: number | null;
  /** write-heavy: keys still stale once the writers are done. */
  staleKept?: number;
  ratioToBaseline: number | null;
}
const results: Result[] = [];

const libraries = readers();
const hit: Record<string, { ops: number[]; p99: number[] }> = {};
for (let round = 0; round < rounds; round++) {
  for (const [name, make] of Object.entries(libraries)) {
    const r = await measureHit(make);
    (hit[name] ??= { ops: [], p99: [] }).ops.push(r.opsPerSec);
    hit[name].p99.push(r.p99Ms);
    log(`hit ${name} round ${round + 1}: ${Math.round(r.opsPerSec)} reads/s`);
  }
}
const baseline = median(hit['raw-get']?.ops ?? [0]);
for (const [name, { ops, p99 }] of Object.entries(hit)) {
  results.push({
    library: name,
    scenario: 'hit',
    opsPerSec: Math.round(median(ops)),
    p99Ms: Math.round(median(p99) * 100) / 100,
    loaderCalls: null,
    staleReads: null,
    ratioToBaseline: Math.round((median(ops) / baseline) * 100) / 100,
  });
}
for (const [name, make] of Object.entries(libraries)) {
  if (name.startsWith('raw-get')) continue;
  const calls = await measureHerd(make, `herd-${name}`);
  results.push({
    library: name,
    scenario: 'herd',
    opsPerSec: null,
    p99Ms: null,
    loaderCalls: calls,
    staleReads: null,
    ratioToBaseline: null,
  });
  log(`herd ${name}: ${calls} loader call(s) for 500 concurrent reads`);
}

// write-heavy: readers and writers of two instances over a PostgreSQL table.
const postgres = await benchPostgres();
process.stderr.write(`${describeServer(await serverSettings(postgres))}
`);
const admin = new pg.Pool({ connectionString: postgres.url, max: 1 });
admin.on('error', () => undefined);
const schema = await createScratchSchema(admin, 'raceguard_bench_cache');
const pool = new pg.Pool({
  connectionString: postgres.url,
  max: 40,
  options: schema.connectionOptions,
});
pool.on('error', () => undefined);
await pool.query('CREATE TABLE items (id int PRIMARY KEY, version bigint NOT NULL)');
const ITEMS = 100;

async function measureWriteHeavy(
  make: () => Reader,
  run: number,
): Promise<{
  opsPerSec: number;
  p99Ms: number;
  loaderCalls: number;
  staleReads: number;
  staleKept: number;
}> {
  await pool.query('TRUNCATE items');
  await pool.query('INSERT INTO items SELECT g, 1 FROM generate_series(0, $1) AS g', [ITEMS - 1]);
  const readerSide = make();
  const writerSide = make();
  await Promise.all([readerSide.ready, writerSide.ready]);
  // The newest version of each item whose writer has returned.
  const acknowledged = new Array<number>(ITEMS).fill(1);
  let loaderCalls = 0;
  let staleReads = 0;
  let reads = 0;
  const latencies: number[] = [];
  const keyOf = (item: number): string => `wh${run}:${item}`;
  const loadItem = async (item: number): Promise<{ version: number }> => {
    loaderCalls++;
    const { rows } = await pool.query('SELECT version FROM items WHERE id = $1', [item]);
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 20)); // the slow loader
    return { version: Number((rows[0] as { version: string }).version) };
  };
  const started = performance.now();
  const until = started + durationMs;
  await Promise.all([
    ...Array.from({ length: 32 }, async () => {
      while (performance.now() < until) {
        const item = Math.floor(Math.random() * ITEMS);
        const floor = acknowledged[item] as number;
        const t = performance.now();
        const got = (await readerSide.read(keyOf(item), () => loadItem(item))) as {
          version: number;
        };
        latencies.push(performance.now() - t);
        reads++;
        if (got.version < floor) staleReads++;
      }
    }),
    ...Array.from({ length: 4 }, async () => {
      while (performance.now() < until) {
        const item = Math.floor(Math.random() * ITEMS);
        const { rows } = await pool.query(
          'UPDATE items SET version = version + 1 WHERE id = $1 RETURNING version',
          [item],
        );
        await writerSide.invalidate?.(keyOf(item));
        const version = Number((rows[0] as { version: string }).version);
        acknowledged[item] = Math.max(acknowledged[item] as number, version);
      }
    }),
  ]);
  const elapsed = performance.now() - started;
  // Once every writer has returned and the bus has had time to deliver: what does the cache keep?
  await new Promise((resolve) => setTimeout(resolve, 200));
  let staleKept = 0;
  for (let item = 0; item < ITEMS; item++) {
    const got = (await readerSide.read(keyOf(item), () => loadItem(item))) as { version: number };
    const { rows } = await pool.query('SELECT version FROM items WHERE id = $1', [item]);
    if (got.version !== Number((rows[0] as { version: string }).version)) staleKept++;
  }
  await readerSide.close();
  await writerSide.close();
  return {
    opsPerSec: (reads / elapsed) * 1000,
    p99Ms: percentile(latencies, 99),
    loaderCalls,
    staleReads,
    staleKept,
  };
}

let run = 0;
for (const [name, make] of Object.entries(libraries)) {
  if (name.startsWith('raw-get') || name.includes('autopipeline')) continue;
  const r = await measureWriteHeavy(make, run++);
  results.push({
    library: name,
    scenario: 'write-heavy',
    opsPerSec: Math.round(r.opsPerSec),
    p99Ms: Math.round(r.p99Ms * 100) / 100,
    loaderCalls: r.loaderCalls,
    staleReads: r.staleReads,
    staleKept: r.staleKept,
    ratioToBaseline: null,
  });
  log(
    `write-heavy ${name}: ${Math.round(r.opsPerSec)} reads/s, ${r.staleReads} stale read(s), ${r.staleKept} of ${ITEMS} keys stale after the run`,
  );
}
await pool.end();
await schema.drop();
await admin.end();
await postgres.stop();

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      [
        'library',
        'scenario',
        'reads/s',
        '× raw GET',
        'p99 ms',
        'loader calls',
        'stale reads',
        'stale kept',
      ],
      results.map((r) => [
        r.library,
        r.scenario,
        r.opsPerSec === null ? '-' : String(r.opsPerSec),
        r.ratioToBaseline === null ? '-' : r.ratioToBaseline.toFixed(2),
        r.p99Ms === null ? '-' : r.p99Ms.toFixed(2),
        r.loaderCalls === null ? '-' : String(r.loaderCalls),
        r.staleReads === null ? '-' : String(r.staleReads),
        r.staleKept === undefined ? '-' : `${r.staleKept}/${ITEMS}`,
      ]),
    )}\n\nfloor: raw ioredis GET + JSON.parse, ${Math.round(baseline)} reads/s (64 workers)\n`,
  );
}
await server.stop();
