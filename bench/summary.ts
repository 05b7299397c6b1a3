/**
 * The summary table of docs/benchmarks.md, generated from the benchmarks'
 * recorded `--json` output (`bench/results/<name>.json`, written by
 * bench/record.ts), never typed by hand: each row reads its figures from a
 * recorded run, computes the ratio to the floor measured in that same run,
 * checks it against the target, and says when the run was made and how
 * busy the machine was. A workload with no recorded run says so.
 *
 *   npm run bench:summary             # rewrite the table in docs/benchmarks.md
 *   npm run bench:summary -- --check  # exit 1 if the table is not what the results give
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as prettier from 'prettier';
import { median } from './stats.js';

const { values: args } = parseArgs({
  options: {
    check: { type: 'boolean', default: false },
    results: { type: 'string', default: join(import.meta.dirname, 'results') },
    docs: { type: 'string', default: join(import.meta.dirname, '..', 'docs', 'benchmarks.md') },
  },
});

/** What bench/record.ts keeps of one run. */
interface Recorded {
  readonly name: string;
  readonly command: string;
  readonly date: string;
  readonly machine: { readonly cores: number; readonly load: readonly [number, number] };
  readonly output: Record<string, unknown>;
}

type Row = Record<string, unknown>;

/** One line of the summary, as a benchmark's results give it. */
interface Line {
  readonly workload: string;
  /** What the ratios are ratios to (the 1.00), measured in the same run. */
  readonly floor: string;
  readonly peers: string;
  readonly ours: string;
  readonly target: string;
  /** Whether the target is met; `undefined` when the run lacks a figure. */
  readonly met: boolean | undefined;
  /** Why not, or what is met only in part. */
  readonly note?: string;
}

/** One benchmark's part of the summary: which recorded run, and the lines it gives. */
interface Section {
  readonly bench: string;
  /** How to record it (the command bench/record.ts runs). */
  readonly record: string;
  /** Workloads named when no run is recorded. */
  readonly workloads: readonly string[];
  lines(output: Record<string, unknown>): Line[];
}

/** The `results` rows of a benchmark's output. */
const rowsOf = (output: Record<string, unknown>, field = 'results'): Row[] =>
  Array.isArray(output[field]) ? (output[field] as Row[]) : [];

/** The first row whose fields equal `where`'s. */
const find = (rows: readonly Row[], where: Row): Row | undefined =>
  rows.find((row) => Object.entries(where).every(([key, value]) => row[key] === value));

/** A numeric field of a row, or `undefined`. */
const num = (row: Row | undefined, field: string): number | undefined => {
  const value = row?.[field];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
};

/** A ratio as text: `0.93×`, or `—` when not measured. */
const x = (value: number | undefined, digits = 2): string =>
  value === undefined ? '—' : `${value.toFixed(digits)}×`;

/** `a / b` when both are measured. */
const over = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;

/** Whether every check passes: `false` as soon as one fails, `undefined` if one is not measured. */
const all = (...checks: (boolean | undefined)[]): boolean | undefined =>
  checks.includes(false) ? false : checks.includes(undefined) ? undefined : true;

const atLeast = (value: number | undefined, target: number): boolean | undefined =>
  value === undefined ? undefined : value >= target - 1e-9;

const SECTIONS: readonly Section[] = [
  {
    bench: 'hot-row',
    record: 'npm run build && npx tsx bench/record.ts hot-row -- bench/hot-row.ts',
    workloads: ['hot row: `atomicDecrement` and the combiner'],
    lines(output) {
      const rows = rowsOf(output);
      const server = output.server as { fsync?: string; synchronousCommit?: string } | undefined;
      const durability =
        server?.fsync === 'on' && server.synchronousCommit === 'on'
          ? 'durable server'
          : 'server without durable commits';
      const atomic = (clients: number) =>
        num(find(rows, { strategy: 'atomic', clients }), 'ratioToBaseline');
      const combined = (clients: number, processes: number, durable: boolean) =>
        num(find(rows, { strategy: 'combined', clients, processes, durable }), 'ratioToBaseline');
      const lines: Line[] = [
        {
          workload: `hot row, \`atomicDecrement\`, 16 and 64 clients (${durability})`,
          floor: 'bare `UPDATE` on the same pool',
          peers: '—',
          ours: `${x(atomic(16))} (16), ${x(atomic(64))} (64); ${x(atomic(1))} at 1 client`,
          target: '≥ 0.9× at 16 and 64',
          met: all(atLeast(atomic(16), 0.9), atLeast(atomic(64), 0.9)),
        },
      ];
      for (const durable of [false, true])
        for (const [clients, processes, target] of [
          [64, 1, 30],
          [64, 4, 20],
        ] as const) {
          const ratio = combined(clients, processes, durable);
          lines.push({
            workload: `hot row, combiner, ${durable ? 'durable' : 'plain'}, ${clients / processes} × ${processes}`,
            floor: durable
              ? 'a transaction per request (UPDATE + order INSERT)'
              : 'bare `UPDATE`s, same callers and processes',
            peers: '—',
            ours: x(ratio, 1),
            target: `≥ ${target}×`,
            met: atLeast(ratio, target),
          });
        }
      const p99 = rows.filter((row) => row.strategy === 'combined');
      if (p99.length > 0) {
        const worse = p99.filter(
          (row) => (num(row, 'p99Ms') ?? 0) > (num(row, 'baselineP99Ms') ?? 0),
        );
        lines.push({
          workload: 'hot row, combiner p99 latency',
          floor: 'the baseline’s p99 at the same load',
          peers: '—',
          ours: p99
            .map(
              (row) =>
                `${num(row, 'p99Ms') ?? '?'} ms against ${num(row, 'baselineP99Ms') ?? '?'} ms`,
            )
            .join('; '),
          target: 'no worse',
          met: worse.length === 0,
        });
      }
      return lines;
    },
  },
  {
    bench: 'locks',
    record: 'npm run build && npx tsx bench/record.ts locks -- bench/locks.ts',
    workloads: ['Redis lock, uncontended'],
    lines(output) {
      const rows = rowsOf(output);
      const ratio = (library: string) =>
        num(find(rows, { library, backend: 'redis', scenario: 'uncontended' }), 'ratioToBaseline');
      const scripts = ratio('baseline-scripts');
      const ours = over(ratio('raceguard'), scripts);
      // CPU per operation (client and Redis), as efficiency against the scripts':
      // steadier than operations per second on a shared machine.
      const cpu = (library: string) =>
        num(
          find(rows, { library, backend: 'redis', scenario: 'uncontended' }),
          'cpuRatioToBaseline',
        );
      const efficiency = over(cpu('raceguard'), cpu('baseline-scripts'));
      const peers = ['redis-semaphore', 'redlock', '@sesamecare-oss/redlock'].map(
        (library) => [library, over(ratio(library), scripts)] as const,
      );
      const best = Math.max(...peers.map(([, r]) => r ?? 0));
      return [
        {
          workload: 'Redis lock, uncontended, 64 workers',
          floor: `the two Lua scripts bare (${x(scripts)} of \`SET NX\` + \`DEL\`)`,
          peers: peers.map(([library, r]) => `${library} ${x(r)}`).join(', '),
          ours: `${x(ours)}; CPU per operation: ${x(efficiency)} the scripts' efficiency`,
          target: '≥ 0.9× the scripts (throughput and CPU), ahead of every peer',
          met: all(
            atLeast(ours, 0.9),
            atLeast(efficiency, 0.9),
            ours === undefined ? undefined : ours > best,
          ),
        },
        ...contended(rows),
      ];
    },
  },
  {
    bench: 'idempotency',
    record: 'npm run build && npx tsx bench/record.ts idempotency -- bench/idempotency.ts',
    workloads: ['idempotency middleware'],
    lines(output) {
      const rows = rowsOf(output);
      const ratio = (route: string, variant: string, store: string) =>
        num(find(rows, { route, variant, store }), 'ratioToUnprotected');
      const powertools = ratio('trivial', 'powertools', 'redis');
      const lines: Line[] = [];
      for (const [store, client] of [
        ['redis', 'ioredis'],
        ['redis (auto-pipelining)', 'ioredis with auto-pipelining'],
      ] as const) {
        const floor = ratio('trivial', 'floor', store);
        const ours = over(ratio('trivial', 'raceguard', store), floor);
        const peer = over(powertools, floor);
        if (floor === undefined) continue;
        // The store's scripts called by hand, without the middleware (runs since 2026-12-08).
        const byHand =
          store === 'redis' ? over(ratio('trivial', 'store by hand', store), floor) : undefined;
        lines.push({
          workload: `idempotency, trivial route, Redis store (${client}), 64 connections`,
          floor: `two plain \`SET\`s, same client (${x(floor)} of the bare route)${byHand === undefined ? '' : `; the store's own scripts by hand reach ${x(byHand)} of it`}`,
          peers: `Powertools (node-redis, which pipelines) ${x(peer)}`,
          ours: x(ours),
          target: '≥ 0.8× the floor, ahead of Powertools',
          met: all(
            atLeast(ours, 0.8),
            ours === undefined || peer === undefined ? undefined : ours > peer,
          ),
        });
      }
      return [
        ...lines,
        {
          workload: 'idempotency, insert route (one PostgreSQL INSERT)',
          floor: 'the bare route',
          peers: '—',
          ours: `Redis store ${x(ratio('insert', 'raceguard', 'redis'))}, PostgreSQL store ${x(ratio('insert', 'raceguard', 'postgres'))}, \`idempotentTransaction\` ${x(ratio('insert', 'transaction', 'postgres'))}`,
          target: 'none (context)',
          met: undefined,
          note: 'context',
        },
      ];
    },
  },
  {
    bench: 'cache',
    record: 'npm run build && npx tsx bench/record.ts cache -- bench/cache.ts',
    workloads: ['cache hits'],
    lines(output) {
      const hits = rowsOf(output).filter((row) => row.scenario === 'hit');
      const ratio = (library: string) => num(find(hits, { library }), 'ratioToBaseline');
      const redis = ratio('raceguard');
      const local = ratio('raceguard (local tier)');
      const l2 = ratio('bentocache-l2');
      const l1 = ratio('bentocache-l1+l2');
      return [
        {
          workload: 'cache hit, Redis tier',
          floor: 'a raw ioredis `GET`',
          peers: `bentocache L2 ${x(l2)}, cache-manager ${x(ratio('cache-manager'))}`,
          ours: x(redis),
          target: '≥ 0.9×, ahead of bentocache L2',
          met: all(
            atLeast(redis, 0.9),
            redis === undefined || l2 === undefined ? undefined : redis > l2,
          ),
        },
        {
          workload: 'cache hit, in-process tier',
          floor: 'a raw ioredis `GET`',
          peers: `bentocache L1 + L2 ${x(l1)}`,
          ours: x(local),
          target: 'ahead of bentocache L1',
          met: local === undefined || l1 === undefined ? undefined : local > l1,
        },
      ];
    },
  },
  {
    bench: 'orm',
    record: 'npm run build && npx tsx bench/record.ts orm -- bench/orm.ts',
    workloads: ['ORM adapters'],
    lines(output) {
      const all = rowsOf(output);
      const rows = all.filter((row) => !String(row.orm).endsWith('(by hand)'));
      const adapters = [...new Set(rows.map((row) => String(row.orm)))];
      const clients = num(rows[0], 'clients');
      return adapters.map((orm) => {
        const cells = rows.filter((row) => row.orm === orm);
        const ratios = cells.map((row) => num(row, 'ratioToRawDriver') ?? 0);
        const worst = Math.min(...ratios);
        // The ORM's own floor (the same statement by hand through the ORM), atomic cells.
        const floors = cells
          .filter((row) => row.strategy === 'atomic')
          .map((row) => {
            const own = find(all, {
              database: row.database,
              orm: `${orm} (by hand)`,
              strategy: 'atomic',
            });
            return `${String(row.database)} ${x(num(own, 'ratioToRawDriver'))} (the adapter ${x(over(num(row, 'opsPerSec'), num(own, 'opsPerSec')))} of it)`;
          });
        return {
          workload: `ORM adapter: ${orm}, ${clients ?? '?'} clients`,
          floor: 'the same statements on the raw driver',
          peers: floors.length === 0 ? '—' : `${orm} by hand, atomic: ${floors.join(', ')}`,
          ours: cells
            .map(
              (row) =>
                `${String(row.database)} ${String(row.strategy)} ${x(num(row, 'ratioToRawDriver'))}`,
            )
            .join(', '),
          target: '≥ 0.9× in every cell',
          met: atLeast(worst, 0.9),
        };
      });
    },
  },
  {
    bench: 'replicas',
    record: 'npm run build && npx tsx bench/record.ts replicas -- bench/replicas.ts',
    workloads: ['replica router'],
    lines(output) {
      const rows = rowsOf(output);
      const lags = [...new Set(rows.map((row) => num(row, 'lagMs')))].filter(
        (lag): lag is number => lag !== undefined,
      );
      return lags.map((lagMs) => {
        const reads = (strategy: string) => num(find(rows, { strategy, lagMs }), 'readsPerSec');
        const stale = (strategy: string) => num(find(rows, { strategy, lagMs }), 'staleReads');
        const ours = over(reads('raceguard'), reads('random-replica'));
        return {
          workload: `replica router, ${lagMs} ms lag`,
          floor: `random replica (${stale('random-replica') ?? '?'} stale reads)`,
          peers: `primary only ${x(over(reads('primary-only'), reads('random-replica')))}, 2 s after a write to the primary ${x(over(reads('delay-2s'), reads('random-replica')))} (${stale('delay-2s') ?? '?'} stale)`,
          ours: `${x(ours)}, ${stale('raceguard') ?? '?'} stale reads`,
          target: '≥ 0.9×, no stale read',
          met: all(
            atLeast(ours, 0.9),
            stale('raceguard') === undefined ? undefined : stale('raceguard') === 0,
          ),
        };
      });
    },
  },
  {
    bench: 'observability',
    record: 'npm run build && npx tsx bench/record.ts observability -- bench/observability.ts',
    workloads: ['observability'],
    lines(output) {
      const rows = rowsOf(output);
      const operations = [...new Set(rows.map((row) => String(row.operation)))];
      // The issue's targets per operation (the in-process mutex has none for direct OpenTelemetry).
      const targets: Record<string, { otel?: number; aggregated?: number }> = {
        'redis-lock': { otel: 0.9, aggregated: 0.95 },
        atomicDecrement: { otel: 0.95, aggregated: 0.95 },
        'keyed-mutex': { aggregated: 0.8 },
      };
      return operations.map((operation) => {
        const ratio = (variant: string) => num(find(rows, { operation, variant }), 'ratioToNone');
        const target = targets[operation] ?? {};
        const checks: (boolean | undefined)[] = [];
        const wanted: string[] = [];
        if (target.otel !== undefined) {
          checks.push(atLeast(ratio('otel'), target.otel));
          wanted.push(`OpenTelemetry ≥ ${target.otel}×`);
        }
        if (target.aggregated !== undefined) {
          checks.push(atLeast(ratio('otel-aggregated'), target.aggregated));
          wanted.push(`aggregated ≥ ${target.aggregated}×`);
        }
        return {
          workload: `observability: ${operation}`,
          floor: 'nobody listening, same run',
          peers: `a listener that does nothing ${x(ratio('events'))} (the floor of any listener)${ratio('sdk-floor') === undefined ? '' : `; two bare SDK histogram records per use ${x(ratio('sdk-floor'))} (the floor of per-event OpenTelemetry)`}`,
          ours: `OpenTelemetry ${x(ratio('otel'))}, aggregated ${x(ratio('otel-aggregated'))}`,
          target: wanted.length === 0 ? 'none (context)' : wanted.join(', '),
          met: wanted.length === 0 ? undefined : all(...checks),
        };
      });
    },
  },
  {
    bench: 'ordering',
    record: 'npm run build && npx tsx bench/record.ts ordering -- bench/ordering.ts',
    workloads: ['ordered consumer and inbox'],
    lines(output) {
      const rows = rowsOf(output);
      const lines: Line[] = [];
      const brokers = [...new Set(rows.map((row) => String(row.broker)))].filter(
        (broker) => broker !== 'postgres',
      );
      for (const broker of brokers) {
        const ratio = (variant: string) =>
          num(find(rows, { broker, variant, keys: 256 }), 'ratioToUnordered');
        const ordered = ratio('ordered');
        if (ordered !== undefined)
          lines.push({
            workload: `ordered consumer, ${broker}, 256 keys`,
            floor: 'the unordered consumer, same handler',
            peers: '—',
            ours: x(ordered),
            target: '≥ 0.8×',
            met: atLeast(ordered, 0.8),
          });
        const rate = (b: string, variant: string) =>
          num(find(rows, { broker: b, variant, keys: 256 }), 'messagesPerSec');
        const inboxRatio = over(rate(broker, 'inbox'), rate('postgres', 'floor-inbox-transaction'));
        // What the broker leaves of the database: the cheapest handler (one
        // autocommit UPDATE) through the broker, over the same without it.
        const brokerShare = over(
          rate(broker, 'ordered'),
          rate('postgres', 'floor-autocommit-update'),
        );
        if (inboxRatio !== undefined)
          lines.push({
            workload: `inbox (exactly-once), ${broker}, 256 keys`,
            floor: 'the same PostgreSQL transaction without the broker',
            peers: `the broker's own share: one autocommit UPDATE per message through it runs at ${x(brokerShare)} of the same without it`,
            ours: `${x(inboxRatio)} (${x(over(inboxRatio, brokerShare))} of what the broker leaves)`,
            target: '≥ 0.9×',
            met: atLeast(inboxRatio, 0.9),
          });
      }
      return lines;
    },
  },
  {
    bench: 'check',
    record: 'npm run build && npx tsx bench/record.ts check -- bench/check.ts',
    workloads: ['history checker'],
    lines(output) {
      const lines: Line[] = [];
      const files = rowsOf(output, 'files');
      for (const suite of rowsOf(output)) {
        const name = String(suite.suite);
        const ms = num(suite, 'totalMs');
        const porcupine = num(suite, 'porcupineTotalMs');
        // The benchmark's own per-file ratios (files Porcupine takes over 1 ms), else from the files.
        const perFile = files
          .filter((file) => file.suite === name)
          .map((file) => over(num(file, 'ms'), num(file, 'porcupineMs')))
          .filter((r): r is number => r !== undefined);
        const worst =
          num(suite, 'ratioMax') ?? (perFile.length === 0 ? undefined : Math.max(...perFile));
        const middle =
          num(suite, 'ratioMedian') ?? (perFile.length === 0 ? undefined : median(perFile));
        lines.push({
          workload: `history checker, ${num(suite, 'histories') ?? '?'} ${name} histories`,
          floor:
            porcupine === undefined ? 'Porcupine (not run: no Go)' : `Porcupine, ${porcupine} ms`,
          peers: 'Porcupine',
          ours: `${ms ?? '?'} ms (${x(over(ms, porcupine))}); per file median ${x(middle)}, worst ${x(worst)}; ${num(suite, 'verdictsCorrect') ?? '?'} of ${num(suite, 'histories') ?? '?'} verdicts right`,
          target: 'every verdict right, each file within 2×',
          met: all(
            atLeast(worst === undefined ? undefined : 2 / worst, 1),
            num(suite, 'verdictsCorrect') === num(suite, 'histories'),
          ),
        });
      }
      const rss = num(output, 'maxRssMb');
      if (rss !== undefined)
        lines.push({
          workload: 'history checker, peak memory over the whole run',
          floor: '—',
          peers: '—',
          ours: `${rss} MB`,
          target: '< 1 GB',
          met: rss < 1024,
        });
      return lines;
    },
  },
  {
    bench: 'burst',
    record: 'npm run build && npx tsx bench/record.ts burst -- bench/burst.ts',
    workloads: ['burst synchronisation and detection'],
    lines(output) {
      const rows = rowsOf(output);
      const spread = (tool: string, requests: number) =>
        num(
          rows.find((r) => r.tool === tool && r.requests === requests && r.spreadMedianMs != null),
          'spreadMedianMs',
        );
      const lines: Line[] = [];
      const limit = spread('limit', 100);
      const ours = spread('raceguard', 100);
      if (limit !== undefined && ours !== undefined)
        lines.push({
          workload: 'bursts, HTTP/1.1 arrival spread, 100 requests',
          floor: `the SIGSTOP limit (${limit} ms: the server's own dispatch)`,
          peers: `\`Promise.all\` over undici ${spread('promise-all-undici', 100) ?? '?'} ms, \`Promise.all(fetch)\` ${spread('promise-all-fetch', 100) ?? '?'} ms, autocannon ${spread('autocannon', 100) ?? '?'} ms`,
          ours: `${ours} ms (${x(ours / limit)} the limit)`,
          target: 'within 1.2× the limit',
          met: ours <= limit * 1.2,
        });
      const h2 = spread('raceguard-h2', 100);
      const fetchSpread = spread('promise-all-fetch', 100);
      const cannon = spread('autocannon', 100);
      if (h2 !== undefined && fetchSpread !== undefined && cannon !== undefined)
        lines.push({
          workload: 'bursts, HTTP/2 single packet, 100 requests',
          floor: 'autocannon and `Promise.all(fetch)`, same burst',
          peers: `autocannon ${cannon} ms, \`Promise.all(fetch)\` ${fetchSpread} ms`,
          ours: `${h2} ms: ${x(cannon / h2, 1)} and ${x(fetchSpread / h2, 1)} tighter`,
          target: '≥ 3× tighter than both',
          met: cannon / h2 >= 3 && fetchSpread / h2 >= 3,
        });
      const narrow = rows.filter((r) => r.window === 'event-loop-turn');
      const rate = (tool: string) =>
        narrow
          .filter((r) => r.tool === tool)
          .map((r) => num(r, 'detectionRate'))
          .filter((v): v is number => v !== undefined);
      const pipeline = rate('raceguard-pipeline');
      const fetchRates = rate('promise-all-fetch');
      if (pipeline.length > 0 && fetchRates.length > 0) {
        const worst = Math.min(...pipeline);
        const bestFetch = Math.max(...fetchRates);
        const pct = (v: number) => `${Math.round(v * 100)}%`;
        lines.push({
          workload: 'detection, a race window of one event-loop turn',
          floor: '—',
          peers: `\`Promise.all(fetch)\` ${fetchRates.map(pct).join(' and ')} of bursts`,
          ours: `\`http1-pipeline\` ${pipeline.map(pct).join(' and ')}`,
          target: '≥ 95% of bursts, ≥ 1.3× fetch',
          met: worst >= 0.95 && worst >= bestFetch * 1.3,
        });
      }
      return lines;
    },
  },
  {
    bench: 'proxy',
    record: 'npm run build && npx tsx bench/record.ts proxy -- bench/proxy.ts',
    workloads: ['`raceguard proxy` pass-through'],
    lines(output) {
      const rows = rowsOf(output);
      const qps = (route: string, clients: number, protocol: string) =>
        num(find(rows, { route, clients, protocol }), 'qps');
      const lines: Line[] = [];
      for (const protocol of ['simple', 'extended']) {
        const direct = qps('direct', 16, protocol);
        const recording = over(qps('proxy (recording)', 16, protocol), direct);
        const bare = over(qps('proxy (no recording)', 16, protocol), direct);
        const bouncer = over(qps('pgbouncer', 16, protocol), direct);
        if (direct === undefined) continue;
        lines.push({
          workload: `\`raceguard proxy\` pass-through, 16 clients, ${protocol} protocol`,
          floor: 'direct to PostgreSQL, same clients',
          peers:
            bouncer === undefined
              ? 'PgBouncer: not installed where this ran'
              : `PgBouncer (transaction mode) ${x(bouncer)}`,
          ours: `${x(recording)} recording, ${x(bare)} not recording`,
          target: '≥ 0.8×, no worse than PgBouncer, recording ≤ 10% more',
          met: all(
            atLeast(recording, 0.8),
            bouncer === undefined || recording === undefined ? undefined : recording >= bouncer,
            recording === undefined || bare === undefined ? undefined : recording >= bare * 0.9,
          ),
        });
      }
      return lines;
    },
  },
  {
    bench: 'explore',
    record: 'npm run build && npx tsx bench/record.ts explore -- bench/explore.ts',
    workloads: ['explore against fast-check'],
    lines(output) {
      const bugs = rowsOf(output, 'bugs');
      const deep = bugs.filter((bug) => (num(bug, 'preemptions') ?? 0) >= 2);
      const speedups = deep.map((bug) => num(bug, 'portfolioVsFastCheck'));
      const met = speedups.filter((s) => s !== undefined && s >= 3).length;
      return [
        {
          workload: `explore, runs to a bug that needs 2+ preemptions (${deep.length} bugs)`,
          floor: 'fast-check’s scheduler, same bugs and trials',
          peers: 'fast-check',
          ours: deep
            .map((bug, i) => {
              const runs = bug.medianRuns as Record<string, number | null> | undefined;
              return `${String(bug.bug)}: ${runs?.portfolio ?? '?'} runs against ${runs?.['fast-check'] ?? '?'} (speed-up ${x(speedups[i], 2)})`;
            })
            .join(', '),
          target: '≥ 3× fewer runs',
          met: deep.length === 0 ? undefined : met === deep.length,
          ...(met > 0 && met < deep.length && { note: `${met} of ${deep.length}` }),
        },
      ];
    },
  },
  {
    bench: 'clock',
    record: 'npm run build && npx tsx bench/record.ts clock -- bench/clock.ts',
    workloads: ['HLC `now()`'],
    lines(output) {
      const rows = rowsOf(output);
      const hlc = find(rows, { variant: 'HybridLogicalClock.now()' });
      const ratio = num(hlc, 'ratioToFloor');
      const ops = num(hlc, 'opsPerSec');
      return [
        {
          workload: 'HLC `now()`',
          floor: '`Date.now()` + increment',
          peers: '—',
          ours: `${x(ratio)}, ${ops === undefined ? '?' : (ops / 1e6).toFixed(1)}M/s`,
          target: 'within 2×, ≥ 5M/s',
          met: all(atLeast(ratio, 0.5), ops === undefined ? undefined : ops >= 5e6),
        },
      ];
    },
  },
];

/** The contended Redis lock: hand-offs per second and their p50 beside the floor and the peers (no target: context). */
function contended(rows: readonly Row[]): Line[] {
  const row = (library: string) => find(rows, { library, backend: 'redis', scenario: 'contended' });
  const scripts = row('baseline-scripts');
  const ours = row('raceguard');
  if (scripts === undefined || ours === undefined) return [];
  const rate = (r: Row | undefined) =>
    over(num(r, 'ratioToBaseline'), num(scripts, 'ratioToBaseline'));
  const p50 = (r: Row | undefined) => `${num(r, 'p50Ms') ?? '?'} ms`;
  return [
    {
      workload: 'Redis lock, contended (8 workers, one key): hand-offs',
      floor: `the two Lua scripts bare, retried at once (hand-off p50 ${p50(scripts)})`,
      peers: ['redis-semaphore', 'redlock', '@sesamecare-oss/redlock']
        .map((library) => `${library} ${x(rate(row(library)))} (p50 ${p50(row(library))})`)
        .join(', '),
      ours: `${x(rate(ours))}, hand-off p50 ${p50(ours)}`,
      target: 'none (context)',
      met: undefined,
      note: 'context',
    },
  ];
}

/** Markdown-safe cell text. */
const cell = (text: string) => text.replace(/\|/g, '/').replace(/\n/g, ' ');

function render(): string {
  const lines: string[] = [
    '| workload | floor (the 1.00) | peers | raceguard | target | met | run (date; load before → after, cores) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
  ];
  const missing: string[] = [];
  for (const section of SECTIONS) {
    const file = join(args.results, `${section.bench}.json`);
    if (!existsSync(file)) {
      missing.push(`- ${section.workloads.join(', ')}: \`${section.record}\``);
      continue;
    }
    const recorded = JSON.parse(readFileSync(file, 'utf8')) as Recorded;
    const [before, after] = recorded.machine.load;
    const run = `${recorded.date}; ${before} → ${after}, ${recorded.machine.cores} cores`;
    for (const line of section.lines(recorded.output)) {
      const met =
        line.met === undefined
          ? (line.note ?? 'not measured')
          : `${line.met ? 'yes' : '**no**'}${line.note === undefined ? '' : ` (${line.note})`}`;
      lines.push(
        `| ${[line.workload, line.floor, line.peers, line.ours, line.target, met, run].map(cell).join(' | ')} |`,
      );
    }
  }
  if (missing.length > 0)
    lines.push(
      '',
      'No recorded run yet (record one with the command beside it; the section below gives earlier figures):',
      '',
      ...missing,
    );
  return lines.join('\n');
}

const START = '<!-- summary: generated by bench/summary.ts from bench/results; do not edit -->';
const END = '<!-- summary end -->';
const docs = readFileSync(args.docs, 'utf8');
const from = docs.indexOf(START);
const to = docs.indexOf(END);
if (from === -1 || to < from) {
  process.stderr.write(`summary: ${args.docs} has no "${START}" … "${END}" block\n`);
  process.exit(2);
}
// Formatted as the repository formats Markdown, so `prettier --check` and `--check` here agree.
const next = await prettier.format(
  `${docs.slice(0, from + START.length)}\n\n${render()}\n\n${docs.slice(to)}`,
  { ...(await prettier.resolveConfig(args.docs)), filepath: args.docs },
);
if (args.check) {
  if (next !== docs) {
    process.stderr.write(
      'summary: the table in docs/benchmarks.md is not what bench/results gives; run `npm run bench:summary`\n',
    );
    process.exit(1);
  }
} else {
  writeFileSync(args.docs, next);
  process.stderr.write(`summary: ${args.docs} rewritten\n`);
}
