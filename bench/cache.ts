/**
 * The lease cache beside a raw Redis GET and the popular caches, side by
 * side in one run, on a throwaway redis-server:
 *
 * - `hit`: 64 workers reading 1,000 warm keys; the baseline is a raw ioredis
 *   `GET` + `JSON.parse`, the floor of any Redis cache read (and the same
 *   with ioredis' auto-pipelining, which node-redis does by default);
 * - `herd`: 500 concurrent reads of one cold key with a 50 ms loader, from
 *   one process; `loaderCalls` is how many times the loader ran.
 *
 *   npm run bench:cache [-- --duration-ms 2000 --rounds 3 --json]
 */
import { parseArgs } from 'node:util';
import { BentoCache, bentostore } from 'bentocache';
import { redisDriver } from 'bentocache/drivers/redis';
import { createCache as createCacheManager } from 'cache-manager';
import KeyvRedis from '@keyv/redis';
import { Keyv } from 'keyv';
import { Redis } from 'ioredis';
import { renderTable } from '../packages/cli/dist/cli/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import { LeaseCache } from '../packages/raceguard/dist/cache/index.js';
import { startRedisServer } from '../packages/raceguard/dist/testing/index.js';

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
  close(): Promise<unknown>;
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
    raceguard: () => {
      const client = connect();
      const cache = new LeaseCache({ client, prefix: 'rg:' });
      return {
        read: (key, l) => cache.get(key, l),
        close: () => Promise.resolve(client.disconnect()),
      };
    },
    // The same two over an ioredis client that pipelines the commands of one tick
    // (node-redis, under @keyv/redis, does so by default).
    'raw-get (autopipeline)': () => {
      const client = connect(true);
      return {
        read: async (key) => JSON.parse((await client.get(`raw:${key}`)) ?? 'null') as unknown,
        close: () => Promise.resolve(client.disconnect()),
      };
    },
    'raceguard (autopipeline)': () => {
      const client = connect(true);
      const cache = new LeaseCache({ client, prefix: 'rg:' });
      return {
        read: (key, l) => cache.get(key, l),
        close: () => Promise.resolve(client.disconnect()),
      };
    },
    'bentocache-l2': () => {
      const client = connect();
      const bento = new BentoCache({
        default: 'cache',
        stores: {
          cache: bentostore().useL2Layer(redisDriver({ connection: client, prefix: 'bento' })),
        },
      });
      return {
        read: (key, l) => bento.getOrSet({ key, factory: l, ttl: '1h' }),
        close: () => bento.disconnectAll(),
      };
    },
    'cache-manager': () => {
      const cache = createCacheManager({
        stores: [new Keyv({ store: new KeyvRedis(server.url), namespace: 'cm' })],
      });
      return { read: (key, l) => cache.wrap(key, l, 3_600_000), close: () => cache.disconnect() };
    },
  };
}

async function measureHit(make: () => Reader): Promise<{ opsPerSec: number; p99Ms: number }> {
  const reader = make();
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
  ratioToBaseline: number | null;
}
const results: Result[] = [];
const median = (values: number[]): number =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

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

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      ['library', 'scenario', 'reads/s', '× raw GET', 'p99 ms', 'loader calls'],
      results.map((r) => [
        r.library,
        r.scenario,
        r.opsPerSec === null ? '-' : String(r.opsPerSec),
        r.ratioToBaseline === null ? '-' : r.ratioToBaseline.toFixed(2),
        r.p99Ms === null ? '-' : r.p99Ms.toFixed(2),
        r.loaderCalls === null ? '-' : String(r.loaderCalls),
      ]),
    )}\n`,
  );
}
await server.stop();
