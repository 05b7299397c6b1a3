/**
 * Lock throughput and hand-off latency, raceguard beside its peers, in one
 * run on the same servers:
 *
 * - uncontended: 64 workers, each on its own key, acquire + release in a loop;
 * - contended: 8 workers on one key; hand-off latency is the time from one
 *   holder's release to the next holder's grant.
 *
 * Every measurement (one library, one scenario, one round) runs in its own
 * Node process, after a warm-up: an application loads one lock library, and
 * several libraries in one process tax one another (measured: raceguard's
 * uncontended ratio fell from 0.94 to 0.70 when both Redlock libraries ran
 * in the same process before it). Redis libraries use one ioredis
 * connection to one redis-server started here. The physical baseline (`baseline`) is raw `SET key v NX PX` + `DEL`
 * (retried at once when contended); `baseline-scripts` sends raceguard's two
 * Lua scripts bare, the floor of a lock whose token is minted in a script.
 * In-process locks are compared with
 * `async-mutex` behind a `Map`, and with a bare `Set` of held keys as their
 * baseline. PostgreSQL (contended only, each holder keeping the lock 5 ms):
 * the lease lock polling and woken by `LISTEN`/`NOTIFY`, against the
 * server's own lock queue (a session advisory lock) as the baseline;
 * PostgreSQL from `DATABASE_URL`, or embedded.
 *
 *   npm run bench:locks [-- --duration-ms 1000 --rounds 3 --json]
 *   npm run bench:locks -- --backend redis --scenario uncontended   # one part only
 *   npm run bench:locks -- --backend postgres
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { Redlock as SesameRedlock } from '@sesamecare-oss/redlock';
import { Mutex as AsyncMutex } from 'async-mutex';
import { Redis } from 'ioredis';
import pg from 'pg';
import { Mutex as SemaphoreMutex } from 'redis-semaphore';
import Redlock from 'redlock';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import { KeyedMutex } from '../packages/raceguard/dist/local/keyed-mutex.js';
import { createLockTables, PostgresLeaseLock } from '../packages/raceguard/dist/postgres/index.js';
import { ACQUIRE, RELEASE } from '../packages/raceguard/dist/redis/lock-scripts.js';
import { RedisLock } from '../packages/raceguard/dist/redis/redis-lock.js';
import { startRedisServer } from '../packages/raceguard/dist/testing/redis.js';
import { redisCpuUs } from './redis-cpu.js';
import { median } from './stats.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '1000' },
    backend: { type: 'string' },
    scenario: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
    // Internal: run one measurement and print it as JSON.
    worker: { type: 'string' },
    'redis-url': { type: 'string' },
    'database-url': { type: 'string' },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
const UNCONTENDED_WORKERS = 64;
const CONTENDED_WORKERS = 8;
const TTL_MS = 10_000;

type Backend = 'redis' | 'in-process' | 'postgres';
const PG_TABLE = 'bench_locks';

/** Acquire `key`; the returned function releases it. */
type Take = (key: string) => Promise<() => Promise<void>>;

interface Result {
  library: string;
  backend: Backend;
  scenario: 'uncontended' | 'contended';
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  ratioToBaseline: number;
  clientCpuUsPerOp: number | null;
  redisCpuUsPerOp: number | null;
  /** Baseline's CPU per operation (client + Redis) over this library's: noise-resistant, unlike ops/s. */
  cpuRatioToBaseline: number | null;
}

async function uncontended(take: Take, prefix: string, ms: number) {
  const latencies: number[] = [];
  let ops = 0;
  const until = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: UNCONTENDED_WORKERS }, async (_, w) => {
      const key = `${prefix}:u:${w}`;
      while (performance.now() < until) {
        const t = performance.now();
        const release = await take(key);
        await release();
        latencies.push(performance.now() - t);
        ops++;
      }
    }),
  );
  return { opsPerSec: (ops * 1000) / (performance.now() - started), latencies, ops };
}

async function contended(take: Take, prefix: string, ms: number, holdMs = 0) {
  const handoffs: number[] = [];
  let last: { worker: number; releasedAt: number } | undefined;
  let ops = 0;
  const key = `${prefix}:c`;
  const until = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONTENDED_WORKERS }, async (_, worker) => {
      while (performance.now() < until) {
        const release = await take(key);
        // A hand-off is a grant to another worker than the one that released.
        if (last !== undefined && last.worker !== worker)
          handoffs.push(performance.now() - last.releasedAt);
        ops++;
        if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
        last = { worker, releasedAt: performance.now() };
        await release();
        await new Promise((r) => setImmediate(r)); // give the others a chance at the next grant
      }
    }),
  );
  return { opsPerSec: (ops * 1000) / (performance.now() - started), latencies: handoffs, ops };
}

const WARMUP_MS = Math.min(300, durationMs);

/** One measurement in this process: `backend:scenario:library`. */
async function worker(spec: string, redisUrl: string, databaseUrl: string): Promise<void> {
  const [backend, scenario, library] = spec.split(':', 3) as [
    Backend,
    'uncontended' | 'contended',
    string,
  ];
  const client = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  const subscriber = client.duplicate();
  await client.ping();

  const rawTake: Take = async (key) => {
    for (;;) {
      if ((await client.set(key, '1', 'PX', TTL_MS, 'NX')) === 'OK') {
        return async () => {
          await client.del(key);
        };
      }
    }
  };
  // raceguard's own two scripts sent bare (no handle, no validation, no
  // timers): the floor of any lock that mints its token in a script.
  await ACQUIRE.run(client, ['bench:load', 'bench:load:f'], ['1', 1]);
  await RELEASE.run(client, ['bench:load'], ['1', 'bench:load:c']);
  const scriptsTake: Take = async (key) => {
    for (;;) {
      const [granted] = (await client.evalsha(ACQUIRE.sha, 2, key, `${key}:f`, '1', TTL_MS)) as [
        number,
      ];
      if (granted === 1) {
        return async () => {
          await client.evalsha(RELEASE.sha, 1, key, '1', `${key}:c`);
        };
      }
    }
  };
  const raceguard = new RedisLock({ client, subscriber, ttlMs: TTL_MS });
  const redlock = new Redlock([client], { retryCount: 10_000, retryDelay: 5, retryJitter: 5 });
  const sesame = new SesameRedlock([client], { retryCount: 10_000, retryDelay: 5, retryJitter: 5 });

  const redisLibraries: [string, Take][] = [
    ['baseline', rawTake],
    ['baseline-scripts', scriptsTake],
    [
      'raceguard',
      async (key) => {
        const lock = await raceguard.acquire(key, { ttlMs: TTL_MS });
        return () => lock.release();
      },
    ],
    [
      'redlock',
      async (key) => {
        const lock = await redlock.acquire([key], TTL_MS);
        return async () => {
          await lock.release();
        };
      },
    ],
    [
      '@sesamecare-oss/redlock',
      async (key) => {
        const lock = await sesame.acquire([key], TTL_MS);
        return async () => {
          await lock.release();
        };
      },
    ],
    [
      'redis-semaphore',
      async (key) => {
        const mutex = new SemaphoreMutex(client, key, {
          lockTimeout: TTL_MS,
          acquireTimeout: 60_000,
          retryInterval: 5,
        });
        await mutex.acquire();
        return () => mutex.release();
      },
    ],
  ];

  const keyed = new KeyedMutex();
  const asyncMutexes = new Map<string, AsyncMutex>();
  const held = new Set<string>();
  const localLibraries: [string, Take][] = [
    [
      'baseline',
      async (key) => {
        while (held.has(key)) await new Promise((r) => setImmediate(r));
        held.add(key);
        return () => {
          held.delete(key);
          return Promise.resolve();
        };
      },
    ],
    [
      'raceguard',
      async (key) => {
        const lock = await keyed.acquire(key);
        return () => lock.release();
      },
    ],
    [
      'async-mutex',
      async (key) => {
        // The hand-rolled keyed mutex people write: a Map of mutexes, never pruned.
        let mutex = asyncMutexes.get(key);
        if (mutex === undefined) {
          mutex = new AsyncMutex();
          asyncMutexes.set(key, mutex);
        }
        const release = await mutex.acquire();
        return () => {
          release();
          return Promise.resolve();
        };
      },
    ],
  ];

  // PostgreSQL: 8 workers' hand-off on one key. The baseline is the
  // server's own lock queue (a session advisory lock, each waiter blocked in
  // pg_advisory_lock on a connection of its own, woken by the unlock).
  const pool =
    backend === 'postgres'
      ? new pg.Pool({ connectionString: databaseUrl, max: CONTENDED_WORKERS * 2 })
      : undefined;
  const listener = backend === 'postgres' ? new pg.Client(databaseUrl) : undefined;
  await listener?.connect();
  const postgresLibraries: [string, Take][] =
    pool === undefined || listener === undefined
      ? []
      : [
          [
            'baseline',
            async (key) => {
              const connection = await pool.connect();
              await connection.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
              return async () => {
                await connection.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
                connection.release();
              };
            },
          ],
          ...(
            [
              ['raceguard (polling)', new PostgresLeaseLock({ client: pool, table: PG_TABLE })],
              [
                'raceguard (listener)',
                new PostgresLeaseLock({ client: pool, table: PG_TABLE, listener, pollMs: 1000 }),
              ],
            ] as const
          ).map(([name, locks]): [string, Take] => [
            name,
            async (key) => {
              const lock = await locks.acquire(key, { ttlMs: TTL_MS, waitMs: 60_000 });
              return () => lock.release();
            },
          ]),
        ];

  const libraries: readonly (readonly [string, Take])[] =
    backend === 'redis'
      ? redisLibraries
      : backend === 'postgres'
        ? postgresLibraries
        : localLibraries;
  const take = libraries.find(([name]) => name === library)?.[1];
  if (take === undefined) throw new Error(`unknown library ${backend}:${library}`);
  const measure = (t: Take, prefix: string, ms: number) =>
    scenario === 'uncontended'
      ? uncontended(t, prefix, ms)
      : contended(t, prefix, ms, HOLD_MS[backend]);
  const prefix = `bench:${library}:${Math.random().toString(36).slice(2)}`;
  try {
    await measure(take, `${prefix}:warm-up`, WARMUP_MS);
    const redisBefore = backend === 'redis' ? await redisCpuUs(client) : 0;
    const cpuBefore = process.cpuUsage();
    const run = await measure(take, prefix, durationMs);
    const cpu = process.cpuUsage(cpuBefore);
    const redisUs = backend === 'redis' ? (await redisCpuUs(client)) - redisBefore : 0;
    const sample: Sample = {
      opsPerSec: run.opsPerSec,
      p50Ms: percentile(run.latencies, 50),
      p99Ms: percentile(run.latencies, 99),
      // PostgreSQL's processes are not counted: no CPU figures for its rows.
      clientCpuUsPerOp: backend === 'postgres' ? null : (cpu.user + cpu.system) / run.ops,
      redisCpuUsPerOp: backend === 'postgres' ? null : redisUs / run.ops,
    };
    process.stdout.write(JSON.stringify(sample));
  } finally {
    client.disconnect();
    subscriber.disconnect();
    await pool?.end();
    await listener?.end();
  }
}

interface Sample {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of the process running the library (Node), per operation; null for PostgreSQL. */
  clientCpuUsPerOp: number | null;
  /** CPU time of the Redis server per operation (0 in-process, null for PostgreSQL). */
  redisCpuUsPerOp: number | null;
}

const LIBRARIES = {
  redis: [
    'baseline',
    'baseline-scripts',
    'raceguard',
    'redlock',
    '@sesamecare-oss/redlock',
    'redis-semaphore',
  ],
  'in-process': ['baseline', 'raceguard', 'async-mutex'],
  postgres: ['baseline', 'raceguard (polling)', 'raceguard (listener)'],
} as const;

/** How long a contended worker holds the lock: nobody takes a database lock to do nothing. */
const HOLD_MS: Record<Backend, number> = { redis: 0, 'in-process': 0, postgres: 5 };

/** The scenarios each backend runs (PostgreSQL: the hand-off, where waking matters). */
const SCENARIOS: Record<Backend, readonly ('uncontended' | 'contended')[]> = {
  redis: ['uncontended', 'contended'],
  'in-process': ['uncontended', 'contended'],
  postgres: ['contended'],
};

const run = promisify(execFile);

async function measureInChild(
  spec: string,
  redisUrl: string,
  databaseUrl: string,
): Promise<Sample> {
  const { stdout } = await run(process.execPath, [
    '--import',
    'tsx',
    fileURLToPath(import.meta.url),
    '--worker',
    spec,
    '--redis-url',
    redisUrl,
    '--database-url',
    databaseUrl,
    '--duration-ms',
    String(durationMs),
  ]);
  return JSON.parse(stdout) as Sample;
}

if (args.worker !== undefined) {
  await worker(args.worker, args['redis-url'] ?? '', args['database-url'] ?? '');
} else {
  const backends = (['redis', 'in-process', 'postgres'] as const).filter(
    (b) => args.backend === undefined || args.backend === b,
  );
  const scenarios = (['uncontended', 'contended'] as const).filter(
    (c) => args.scenario === undefined || args.scenario === c,
  );
  if (backends.length === 0 || scenarios.length === 0) {
    throw new Error(
      '--backend is redis, in-process or postgres; --scenario is uncontended or contended',
    );
  }
  const server = await startRedisServer();
  const postgres = backends.includes('postgres') ? await benchPostgres() : undefined;
  if (postgres !== undefined)
    process.stderr.write(`${describeServer(await serverSettings(postgres))}\n`);
  if (postgres !== undefined) {
    const setup = new pg.Pool({ connectionString: postgres.url, max: 1 });
    await createLockTables(setup, { table: PG_TABLE });
    await setup.end();
  }
  const results: Result[] = [];
  try {
    for (const backend of backends) {
      for (const scenario of scenarios.filter((c) => SCENARIOS[backend].includes(c))) {
        // Rounds interleave the libraries; each reports its median round, so noise moves one sample, not a ratio.
        const samples = new Map<string, Sample[]>();
        for (let round = 0; round < rounds; round++) {
          for (const library of LIBRARIES[backend]) {
            if (!args.json)
              process.stderr.write(`  ${backend} ${scenario}, round ${round + 1}: ${library}...\n`);
            const sample = await measureInChild(
              `${backend}:${scenario}:${library}`,
              server.url,
              postgres?.url ?? '',
            );
            samples.set(library, [...(samples.get(library) ?? []), sample]);
          }
        }
        const baselineOps = median((samples.get('baseline') ?? []).map((x) => x.opsPerSec));
        const counted = backend !== 'postgres';
        const cpuOf = (sample: Sample[]): number =>
          median(sample.map((x) => (x.clientCpuUsPerOp ?? 0) + (x.redisCpuUsPerOp ?? 0)));
        const cpuMedian = (sample: Sample[], part: 'clientCpuUsPerOp' | 'redisCpuUsPerOp') =>
          counted ? Number(median(sample.map((x) => x[part] ?? 0)).toFixed(2)) : null;
        const baselineCpu = cpuOf(samples.get('baseline') ?? []);
        for (const [library, sample] of samples) {
          const opsPerSec = median(sample.map((x) => x.opsPerSec));
          results.push({
            library,
            backend,
            scenario,
            opsPerSec: Math.round(opsPerSec),
            p50Ms: Number(median(sample.map((x) => x.p50Ms)).toFixed(3)),
            p99Ms: Number(median(sample.map((x) => x.p99Ms)).toFixed(3)),
            ratioToBaseline: Number((opsPerSec / baselineOps).toFixed(3)),
            clientCpuUsPerOp: cpuMedian(sample, 'clientCpuUsPerOp'),
            redisCpuUsPerOp: cpuMedian(sample, 'redisCpuUsPerOp'),
            cpuRatioToBaseline: counted ? Number((baselineCpu / cpuOf(sample)).toFixed(3)) : null,
          });
        }
      }
    }
  } finally {
    await server.stop();
    await postgres?.stop();
  }
  report(results);
}

function report(results: Result[]): void {
  if (args.json) {
    process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
  } else {
    process.stdout.write(
      `${renderTable(
        [
          'backend',
          'scenario',
          'library',
          'ops/s',
          'x baseline',
          'p50 ms',
          'p99 ms',
          'CPU us/op node+redis',
          'x baseline CPU',
        ],
        results.map((r) => [
          r.backend,
          r.scenario,
          r.library,
          r.opsPerSec,
          r.ratioToBaseline.toFixed(2),
          r.p50Ms,
          r.p99Ms,
          r.clientCpuUsPerOp === null || r.redisCpuUsPerOp === null
            ? '-'
            : `${r.clientCpuUsPerOp.toFixed(1)}+${r.redisCpuUsPerOp.toFixed(1)}`,
          r.cpuRatioToBaseline === null ? '-' : r.cpuRatioToBaseline.toFixed(2),
        ]),
      )}\n\nuncontended: ${UNCONTENDED_WORKERS} workers on distinct keys, latency = acquire + release; contended: ${CONTENDED_WORKERS} workers on one key, latency = hand-off (one worker's release to another's grant; PostgreSQL holders keep the lock ${HOLD_MS.postgres} ms); each cell: median of ${rounds} interleaved rounds of ${durationMs} ms, each round in a fresh process after a ${WARMUP_MS} ms warm-up (percentiles: median of the rounds'); CPU: the library's process and the Redis server per operation, median of the rounds, and the baseline's total over the library's (a cost ratio, less sensitive to a noisy machine than ops/s; not for PostgreSQL, whose processes are not counted)\n`,
    );
  }
}
