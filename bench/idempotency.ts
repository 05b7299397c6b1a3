/**
 * Idempotency middleware throughput: the same trivial Fastify route, bare
 * and behind raceguard's Fastify plugin (memory, Redis and PostgreSQL
 * stores), behind `@aws-lambda-powertools/idempotency` with its Redis
 * persistence layer, and as the `floor` of any Redis layer (two plain
 * SETs), and the Redis store and the floor again through a client that
 * pipelines (as Powertools' node-redis does by default); then a route that
 * inserts a PostgreSQL row, bare and behind the
 * Redis and PostgreSQL stores. All measured side by side in one run; each
 * ratio is to the bare version of the same route. The server runs in a
 * child process; this process is the load generator (64 connections, a
 * fresh key per request: the first-request path, claim + completion).
 *
 *   npm run bench:idempotency [-- --duration-ms 2000 --rounds 3 --json]
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import { startRedisServer } from '../packages/raceguard/dist/testing/redis.js';
import { redisCpuUs } from './redis-cpu.js';
import { median } from './stats.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '64' },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
const connections = Number(args.connections);

// `route`: `trivial` returns a constant (the middleware's whole cost shows);
// `insert` writes one PostgreSQL row, the kind of effect idempotency keys protect.
const VARIANTS = [
  { route: 'trivial', variant: 'unprotected', store: '-', path: '/unprotected' },
  { route: 'trivial', variant: 'floor', store: 'redis', path: '/redis-floor' },
  { route: 'trivial', variant: 'store by hand', store: 'redis', path: '/redis-store-by-hand' },
  { route: 'trivial', variant: 'raceguard', store: 'memory', path: '/memory' },
  { route: 'trivial', variant: 'raceguard', store: 'redis', path: '/redis' },
  { route: 'trivial', variant: 'raceguard', store: 'postgres', path: '/postgres' },
  { route: 'trivial', variant: 'powertools', store: 'redis', path: '/powertools' },
  // Both Redis layers again through an ioredis client with auto-pipelining,
  // as Powertools' node-redis client pipelines by default.
  {
    route: 'trivial',
    variant: 'floor',
    store: 'redis (auto-pipelining)',
    path: '/redis-floor-pipelined',
  },
  {
    route: 'trivial',
    variant: 'raceguard',
    store: 'redis (auto-pipelining)',
    path: '/redis-pipelined',
  },
  { route: 'insert', variant: 'unprotected', store: '-', path: '/unprotected-insert' },
  { route: 'insert', variant: 'raceguard', store: 'redis', path: '/redis-insert' },
  { route: 'insert', variant: 'raceguard', store: 'postgres', path: '/postgres-insert' },
  { route: 'insert', variant: 'transaction', store: 'postgres', path: '/postgres-tx-insert' },
] as const;

const log = (line: string): void => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

const redisServer = await startRedisServer();
const postgres = await benchPostgres();
process.stderr.write(`${describeServer(await serverSettings(postgres))}
`);
const server = fork(
  new URL('./idempotency-server.ts', import.meta.url),
  [redisServer.url, postgres.url],
  {
    execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
  },
);
const [ready] = (await once(server, 'message')) as [{ url: string }];
const http = new Pool(ready.url, { connections, pipelining: 1 });

let sequence = 0;
async function measure(path: string) {
  const latencies: number[] = [];
  let done = 0;
  let failed = 0;
  const started = performance.now();
  const until = started + durationMs;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < until) {
        const n = sequence++;
        const t = performance.now();
        const response = await http.request({
          method: 'POST',
          path,
          headers: {
            'content-type': 'application/json',
            'idempotency-key': `"bench-${process.pid}-${n}"`,
          },
          body: JSON.stringify({ n }),
        });
        await response.body.dump();
        latencies.push(performance.now() - t);
        if (response.statusCode === 200) done++;
        else failed++;
      }
    }),
  );
  return { requestsPerSec: (done * 1000) / (performance.now() - started), latencies, failed, done };
}

const redisInfo = new Redis(redisServer.url);

/**
 * CPU time used so far, in µs, by this load generator, the server process
 * and the Redis server (PostgreSQL's processes are not counted).
 */
async function cpuNow(): Promise<{ generator: number; server: number; redis: number }> {
  const response = await http.request({ method: 'GET', path: '/cpu' });
  const { us } = (await response.body.json()) as { us: number };
  const redis = await redisCpuUs(redisInfo);
  const { user, system } = process.cpuUsage();
  return { generator: user + system, server: us, redis };
}

/** Store round trips made so far by the route at `path` (counted in the server). */
async function roundTrips(path: string): Promise<number> {
  const response = await http.request({ method: 'GET', path: '/round-trips' });
  const counts = (await response.body.json()) as Record<string, number>;
  return counts[path] ?? 0;
}

interface Cpu {
  generator: number;
  server: number;
  redis: number;
}
const samples = new Map<string, { rps: number[]; p99: number[]; calls: number[]; cpu: Cpu[] }>();
for (let round = 0; round < rounds; round++) {
  for (const v of VARIANTS) {
    await measure(v.path); // warm-up of this route, not counted
    const before = await roundTrips(v.path);
    const cpuBefore = await cpuNow();
    const result = await measure(v.path);
    const cpuAfter = await cpuNow();
    const requests = Math.max(1, result.done + result.failed);
    const calls = ((await roundTrips(v.path)) - before) / requests;
    if (result.failed > 0)
      throw new Error(`${v.route}/${v.variant}/${v.store}: ${result.failed} requests failed`);
    const id = `${v.route}/${v.variant}/${v.store}`;
    const s = samples.get(id) ?? { rps: [], p99: [], calls: [], cpu: [] };
    s.cpu.push({
      generator: (cpuAfter.generator - cpuBefore.generator) / requests,
      server: (cpuAfter.server - cpuBefore.server) / requests,
      redis: (cpuAfter.redis - cpuBefore.redis) / requests,
    });
    s.rps.push(result.requestsPerSec);
    s.p99.push(percentile(result.latencies, 99));
    s.calls.push(calls);
    samples.set(id, s);
    log(`round ${round + 1}/${rounds} ${id}: ${result.requestsPerSec.toFixed(0)} req/s`);
  }
}

const results = VARIANTS.map((v) => {
  const base = median(samples.get(`${v.route}/unprotected/-`)?.rps ?? []);
  const s = samples.get(`${v.route}/${v.variant}/${v.store}`) ?? {
    rps: [],
    p99: [],
    calls: [],
    cpu: [],
  };
  const cpu = (part: keyof Cpu): number => Number(median(s.cpu.map((c) => c[part])).toFixed(1));
  const requestsPerSec = median(s.rps);
  return {
    route: v.route,
    variant: v.variant,
    store: v.store,
    requestsPerSec: Math.round(requestsPerSec),
    p99Ms: Number(median(s.p99).toFixed(2)),
    ratioToUnprotected: Number((requestsPerSec / base).toFixed(2)),
    storeRoundTripsPerRequest: Number(median(s.calls).toFixed(2)),
    /** CPU µs per request: load generator, server process, Redis server (not PostgreSQL). */
    cpuUsPerRequest: { generator: cpu('generator'), server: cpu('server'), redis: cpu('redis') },
  };
});

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      [
        'route',
        'variant',
        'store',
        'req/s',
        '× unprotected',
        'p99 ms',
        'store trips/req',
        'CPU us/req gen+server+redis',
      ],
      results.map((r) => [
        r.route,
        r.variant,
        r.store,
        r.requestsPerSec,
        r.ratioToUnprotected.toFixed(2),
        r.p99Ms.toFixed(2),
        r.storeRoundTripsPerRequest.toFixed(2),
        `${r.cpuUsPerRequest.generator.toFixed(0)}+${r.cpuUsPerRequest.server.toFixed(0)}+${r.cpuUsPerRequest.redis.toFixed(0)}`,
      ]),
    )}\n\n${connections} connections, a fresh Idempotency-Key per request; median of ${rounds} interleaved rounds of ${durationMs} ms; CPU per request: this load generator, the server process and the Redis server (PostgreSQL's processes not counted), median of the rounds\n`,
  );
}

redisInfo.disconnect();
await http.close();
server.kill();
await redisServer.stop();
await postgres.stop();
