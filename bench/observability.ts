/**
 * What observing raceguard costs: the same operations with nobody
 * listening (`none`), with a subscriber on the diagnostics channels that
 * does nothing (`events`: the events are built and published), and with
 * `raceguard/otel` recording into the OpenTelemetry SDK (`otel`: a
 * MeterProvider with a manual reader, spans off), and the same in its
 * aggregated mode (`otel-aggregated`: local arrays, handed over at
 * collection); and `sdk-floor`, the SDK's own cost for what `otel` records
 * per lock use: a listener that only records two histogram values with
 * attributes built once (the least any per-event OpenTelemetry
 * instrumentation of a lock can cost). Operations: `withLock`
 * on the in-process keyed mutex and on the Redis lock (uncontended, 32
 * workers on distinct keys), and `atomicDecrement` on PostgreSQL (which
 * publishes nothing unless it retries). Rounds interleave the variants;
 * each figure is the median of the rounds.
 *
 *   npm run bench:observability [-- --duration-ms 1000 --rounds 5 --json]
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { parseArgs } from 'node:util';
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import { Redis } from 'ioredis';
import pg from 'pg';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { RACEGUARD_CHANNELS, withLock } from '../packages/raceguard/dist/index.js';
import { KeyedMutex } from '../packages/raceguard/dist/local/index.js';
import { instrumentRaceguard } from '../packages/raceguard/dist/otel/index.js';
import { atomicDecrement } from '../packages/raceguard/dist/postgres/index.js';
import { RedisLock } from '../packages/raceguard/dist/redis/index.js';
import { createScratchSchema, startRedisServer } from '../packages/raceguard/dist/testing/index.js';
import { median } from './stats.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    'duration-ms': { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const durationMs = Number(args['duration-ms']);
const rounds = Number(args.rounds);
if (!(durationMs > 0) || !Number.isSafeInteger(rounds) || rounds < 1) {
  process.stderr.write('usage: observability [--duration-ms N] [--rounds N] [--json]\n');
  process.exit(2);
}
const WORKERS = 32;

async function measure(op: (worker: number) => Promise<unknown>): Promise<number> {
  let ops = 0;
  const started = performance.now();
  const until = started + durationMs;
  await Promise.all(
    Array.from({ length: WORKERS }, async (_, worker) => {
      while (performance.now() < until) {
        await op(worker);
        ops += 1;
      }
    }),
  );
  return (ops * 1000) / (performance.now() - started);
}

type Variant = 'none' | 'events' | 'otel' | 'otel-aggregated' | 'sdk-floor';
const VARIANTS: readonly Variant[] = ['none', 'events', 'otel', 'otel-aggregated', 'sdk-floor'];
/** Turn a variant on; returns how to turn it off. */
function enable(variant: Variant): () => void {
  if (variant === 'none') return () => undefined;
  if (variant === 'events') {
    const noop = (): void => undefined;
    const names = Object.values(RACEGUARD_CHANNELS);
    for (const name of names) subscribe(name, noop);
    return () => {
      for (const name of names) unsubscribe(name, noop);
    };
  }
  const reader = new PeriodicExportingMetricReader({
    exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
    exportIntervalMillis: 3_600_000,
  });
  const meterProvider = new MeterProvider({ readers: [reader] });
  if (variant === 'sdk-floor') {
    const meter = meterProvider.getMeter('floor');
    const wait = meter.createHistogram('floor.wait', { unit: 's' });
    const hold = meter.createHistogram('floor.hold', { unit: 's' });
    const waitAttributes = { backend: 'floor', outcome: 'acquired', key: 'k' };
    const holdAttributes = { backend: 'floor', key: 'k' };
    const record = (message: unknown): void => {
      const event = message as { waitedMs: number; heldMs?: number };
      wait.record(event.waitedMs / 1000, waitAttributes);
      hold.record((event.heldMs ?? 0) / 1000, holdAttributes);
    };
    subscribe(RACEGUARD_CHANNELS.lock, record);
    return () => {
      unsubscribe(RACEGUARD_CHANNELS.lock, record);
      void meterProvider.shutdown();
    };
  }
  const telemetry = instrumentRaceguard({
    meterProvider,
    spanEvents: false,
    aggregate: variant === 'otel-aggregated',
  });
  return () => {
    telemetry.close();
    void meterProvider.shutdown();
  };
}

const redisServer = await startRedisServer();
const redis = new Redis(redisServer.url);
const postgres = await benchPostgres();
process.stderr.write(`${describeServer(await serverSettings(postgres))}
`);
const admin = new pg.Pool({ connectionString: postgres.url, max: 1 });
const schema = await createScratchSchema(admin, 'rg_bench_obs');
const pool = new pg.Pool({
  connectionString: postgres.url,
  max: WORKERS,
  options: schema.connectionOptions,
});
await pool.query('CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL)');
await pool.query(
  `INSERT INTO hot SELECT g, 1000000000000 FROM generate_series(0, ${WORKERS - 1}) AS g`,
);
const mutex = new KeyedMutex();
const redisLock = new RedisLock({ client: redis, ttlMs: 10_000 });
const operations: Record<string, (worker: number) => Promise<unknown>> = {
  'keyed-mutex': (worker) => withLock(mutex, `k:${worker}`, () => Promise.resolve()),
  'redis-lock': (worker) => withLock(redisLock, `k:${worker}`, () => Promise.resolve()),
  atomicDecrement: (worker) =>
    atomicDecrement(pool, { table: 'hot', key: { id: worker }, column: 'v', amount: 1 }),
};

const results: { operation: string; variant: Variant; opsPerSec: number; ratioToNone: number }[] =
  [];
try {
  for (const [operation, op] of Object.entries(operations)) {
    await measure(op); // warm-up
    const samples: Record<Variant, number[]> = {
      none: [],
      events: [],
      otel: [],
      'otel-aggregated': [],
      'sdk-floor': [],
    };
    for (let round = 0; round < rounds; round++) {
      for (const variant of VARIANTS) {
        if (!args.json) process.stderr.write(`  ${operation}, ${variant}, round ${round + 1}...\n`);
        const off = enable(variant);
        try {
          samples[variant].push(await measure(op));
        } finally {
          off();
        }
      }
    }
    const none = median(samples.none);
    for (const variant of VARIANTS) {
      const opsPerSec = median(samples[variant]);
      results.push({
        operation,
        variant,
        opsPerSec: Math.round(opsPerSec),
        ratioToNone: Number((opsPerSec / none).toFixed(3)),
      });
    }
  }
} finally {
  redis.disconnect();
  await redisServer.stop();
  await pool.end();
  await schema.drop();
  await admin.end();
  await postgres.stop();
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  process.stdout.write(
    `${renderTable(
      ['operation', 'variant', 'ops/s', 'x none'],
      results.map((r) => [r.operation, r.variant, r.opsPerSec, r.ratioToNone.toFixed(2)]),
    )}\n\n${WORKERS} workers on distinct keys; none (the floor): nobody listens; events: a no-op subscriber on every raceguard channel; otel: raceguard/otel into the OpenTelemetry SDK (spans off); otel-aggregated: its aggregated mode; sdk-floor: two histogram records per lock use, attributes built once (the SDK's own cost); median of ${rounds} interleaved round(s) of ${durationMs} ms\n`,
  );
}
