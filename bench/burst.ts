/**
 * How tightly each way of sending "N requests at once" actually lands on a
 * server, and how often it exposes a real race, in one run on one machine:
 *
 * - arrival spread (last minus first moment a request's body is complete at
 *   the server) of bursts of 30 and 100 requests, for raceguard's HTTP/1.1
 *   last-byte sync and HTTP/2 single-packet bursts, `Promise.all` over a
 *   warmed undici pool, `Promise.all(fetch)`, and autocannon (`-c N -a N`);
 * - `limit`: the server process is stopped (SIGSTOP), all N complete
 *   requests are written on N open connections, then it is resumed: the
 *   spread is the server's own dispatch time, which no client can beat;
 * - detection: the fraction of bursts that oversell the lab's unsafe
 *   inventory endpoint (stock 1) at gap 0 and gap 1 ms (window
 *   `db-round-trip`), and an in-memory counter whose race window is one
 *   event-loop turn (`event-loop-turn`), bursts of 10 and 30.
 *
 *   npm run bench:burst [-- --bursts 20 --detection-bursts 40 --narrow-only --json]
 */
import { fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { Pool, request } from 'undici';
import { renderTable } from '../packages/cli/dist/commands/table.js';
import { percentile } from '../packages/cli/dist/run/percentile.js';
import { inventory } from '../packages/cli/dist/lab/scenarios/inventory.js';
import { createLabServer } from '../packages/cli/dist/lab/server.js';
import { postgresDb } from '../packages/cli/dist/lab/sql.js';
import { createScratchSchema } from '../packages/raceguard/dist/testing/scratch-schema.js';
import { Http1BurstClient } from '../packages/cli/dist/run/http1.js';
import { Http2BurstClient } from '../packages/cli/dist/run/http2.js';
import { benchPostgres, describeServer, serverSettings } from './server.js';

const { values: args } = parseArgs({
  options: {
    bursts: { type: 'string', default: '20' },
    'detection-bursts': { type: 'string', default: '40' },
    /** Only the narrow-window (event-loop turn) detection cells. */
    'narrow-only': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const BURSTS = Number(args.bursts);
const DETECTION_BURSTS = Number(args['detection-bursts']);
const SIZES = [30, 100];
/** Burst sizes of the narrow-window detection cells. */
const NARROW_SIZES = [10, 30];
/** Burst size of the database-window detection cells. */
const DETECTION_SIZE = 30;
const log = (line: string): void => {
  if (!args.json) process.stderr.write(`${line}\n`);
};

interface Result {
  tool: string;
  protocol: 'http1' | 'http2' | '-';
  requests: number;
  gapMs: number | null;
  spreadMedianMs: number | null;
  spreadP95Ms: number | null;
  detectionRate: number | null;
  /**
   * Detection rows: how wide the race window is. `db-round-trip`: the lab's
   * inventory endpoint (read, a database round trip, write);
   * `event-loop-turn`: an in-memory counter read, `setImmediate`, written.
   */
  window?: 'db-round-trip' | 'event-loop-turn';
}
const results: Result[] = [];

/** A way to send `n` POSTs "at once" to `path` on `origin`. */
type Sender = (n: number) => Promise<void>;

const body = JSON.stringify({ productId: 1, buyer: 'b' });
const headers = { 'content-type': 'application/json' };

async function makeSenders(
  origin: string,
  h2origin: string | undefined,
  max: number,
  path: string,
) {
  const h1 = await Http1BurstClient.open(origin, { connections: max, warmupPath: '/' });
  const h2 =
    h2origin === undefined ? undefined : await Http2BurstClient.open(h2origin, { streams: max });
  const pool = new Pool(origin, { connections: max, pipelining: 1 });
  await Promise.all(
    Array.from({ length: max }, async () =>
      (await pool.request({ method: 'GET', path: '/' })).body.dump(),
    ),
  );
  const requests = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      method: 'POST',
      path,
      headers,
      body: body.replace('"b"', `"b${i}"`),
    }));
  const senders: Record<string, { protocol: 'http1' | 'http2'; send: Sender }> = {
    raceguard: { protocol: 'http1', send: async (n) => void (await h1.fire(requests(n))) },
    ...(h2 !== undefined && {
      'raceguard-h2': {
        protocol: 'http2' as const,
        send: async (n: number) => void (await h2.fire(requests(n))),
      },
    }),
    'promise-all-undici': {
      protocol: 'http1',
      send: async (n) => {
        await Promise.all(
          requests(n).map(async (r) =>
            (
              await pool.request({ method: 'POST', path: r.path, headers: r.headers, body: r.body })
            ).body.dump(),
          ),
        );
      },
    },
    'promise-all-fetch': {
      protocol: 'http1',
      send: async (n) => {
        await Promise.all(
          requests(n).map(async (r) =>
            (
              await fetch(`${origin}${r.path}`, {
                method: 'POST',
                headers: r.headers,
                body: r.body,
              })
            ).arrayBuffer(),
          ),
        );
      },
    },
    autocannon: {
      protocol: 'http1',
      send: (n) =>
        new Promise((resolve, reject) => {
          autocannon(
            { url: `${origin}${path}`, connections: n, amount: n, method: 'POST', headers, body },
            (error: Error | null) => (error ? reject(error) : resolve()),
          );
        }),
    },
  };
  return {
    senders,
    close: async () => {
      h1.close();
      h2?.close();
      await pool.close();
    },
  };
}

async function arrivalsOf(origin: string): Promise<number[]> {
  const response = await request(`${origin}/_arrivals`);
  return (await response.body.json()) as number[];
}

async function reset(origin: string): Promise<void> {
  await (await request(`${origin}/_reset`, { method: 'POST' })).body.dump();
}

if (!args['narrow-only']) {
  // ---- spread ---------------------------------------------------------------
  const server = fork(new URL('./burst-server.ts', import.meta.url), [], {
    execArgv: ['--conditions=raceguard-source', '--import', 'tsx'],
  });
  const [addresses] = (await once(server, 'message')) as [{ http1: string; http2: string }];
  const spreads = new Map<string, number[]>();
  const { senders, close } = await makeSenders(
    addresses.http1,
    addresses.http2,
    Math.max(...SIZES),
    '/burst',
  );

  /** The physical limit: every complete request waits in the stopped server's socket buffers. */
  async function limitBurst(n: number): Promise<void> {
    const url = new URL(addresses.http1);
    const sockets = await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(Number(url.port), url.hostname, () => resolve(socket));
            socket.on('error', reject);
          }),
      ),
    );
    // Let the server accept the connections before it is stopped.
    await new Promise((r) => setTimeout(r, 50));
    const wire = `POST /burst HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
    server.kill('SIGSTOP');
    try {
      await Promise.all(
        sockets.map((s) => new Promise<void>((resolve) => s.write(wire, () => resolve()))),
      );
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      server.kill('SIGCONT');
    }
    await Promise.all(
      sockets.map(
        (s) =>
          new Promise((resolve) => {
            s.resume();
            s.on('close', resolve);
          }),
      ),
    );
  }

  const tools: [string, 'http1' | 'http2', Sender][] = [
    ['limit', 'http1', limitBurst],
    ...Object.entries(senders).map(
      ([name, s]) => [name, s.protocol, s.send] as [string, 'http1' | 'http2', Sender],
    ),
  ];
  for (let b = 0; b < BURSTS; b++) {
    for (const n of SIZES) {
      for (const [tool, protocol, send] of tools) {
        await reset(addresses.http1);
        await send(n);
        const arrivals = await arrivalsOf(addresses.http1);
        if (arrivals.length !== n)
          throw new Error(`${tool}: ${arrivals.length} of ${n} requests arrived`);
        const key = `${tool}|${protocol}|${n}`;
        const list = spreads.get(key) ?? [];
        list.push(Math.max(...arrivals) - Math.min(...arrivals));
        spreads.set(key, list);
      }
    }
    log(`spread: burst ${b + 1}/${BURSTS}`);
  }
  await close();
  server.kill();
  for (const [key, list] of spreads) {
    const [tool, protocol, n] = key.split('|') as [string, 'http1' | 'http2', string];
    results.push({
      tool,
      protocol,
      requests: Number(n),
      gapMs: null,
      spreadMedianMs: round(percentile(list, 50)),
      spreadP95Ms: round(percentile(list, 95)),
      detectionRate: null,
    });
  }

  // ---- detection ---------------------------------------------------------------
  const postgres = await benchPostgres();
  process.stderr.write(`${describeServer(await serverSettings(postgres))}
`);
  const admin = new pg.Pool({ connectionString: postgres.url, max: 2 });
  const schema = await createScratchSchema(admin, 'rg_bench_burst');
  const db = new pg.Pool({
    connectionString: postgres.url,
    max: 32,
    options: schema.connectionOptions,
  });
  db.on('error', () => undefined);
  const labPool = postgresDb(db);
  await inventory.createSchema(labPool, 'unsafe');
  await inventory.seed(labPool, { concurrency: 10 });
  for (const gapMs of [0, 1]) {
    const lab = createLabServer({ pool: labPool, scenarios: [inventory], gapMs });
    const origin = await lab.listen({ host: '127.0.0.1', port: 0 });
    const { senders: labSenders, close: closeLab } = await makeSenders(
      origin,
      undefined,
      DETECTION_SIZE,
      '/scenarios/inventory/unsafe',
    );
    for (const [tool, s] of Object.entries(labSenders)) {
      let exposed = 0;
      for (let b = 0; b < DETECTION_BURSTS; b++) {
        await db.query('TRUNCATE inventory_orders');
        await db.query('UPDATE inventory_products SET stock = 1 WHERE id = 1');
        await s.send(DETECTION_SIZE);
        const { rows } = await db.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM inventory_orders',
        );
        if (Number(rows[0]?.n) > 1) exposed++;
        else if (Number(rows[0]?.n) === 0)
          throw new Error(`${tool}: no order at all; is the lab seeded?`);
      }
      results.push({
        tool,
        protocol: 'http1',
        requests: DETECTION_SIZE,
        gapMs,
        spreadMedianMs: null,
        spreadP95Ms: null,
        detectionRate: exposed / DETECTION_BURSTS,
        window: 'db-round-trip',
      });
      log(`detection gap ${gapMs}: ${tool} ${exposed}/${DETECTION_BURSTS}`);
    }
    await closeLab();
    await lab.close();
  }
  await db.end();
  await schema.drop();
  await admin.end();
  await postgres.stop();
}

// ---- narrow window: one event-loop turn ---------------------------------------
// A service in a process of its own whose race window is one turn of its event
// loop: read the in-memory stock, setImmediate, write it back. Only requests whose
// bodies complete within the same turn can both see the last unit.
const NARROW_SERVER = `
const http = require('node:http');
let stock = 1, orders = 0;
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/reset') { stock = 1; orders = 0; res.end('{}'); return; }
    if (req.url === '/orders') { res.end(JSON.stringify({ orders })); return; }
    if (req.method !== 'POST') { res.end('{}'); return; }
    const seen = stock;
    setImmediate(() => {
      if (seen > 0) { stock = seen - 1; orders += 1; res.end('{"ok":true}'); }
      else { res.statusCode = 409; res.end('{"ok":false}'); }
    });
  });
}).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });
`;
const narrow = spawn(process.execPath, ['-e', NARROW_SERVER], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const narrowOrigin = await new Promise<string>((resolve, reject) => {
  narrow.stdout.once('data', (chunk: Buffer) =>
    resolve(`http://127.0.0.1:${chunk.toString().trim()}`),
  );
  narrow.once('error', reject);
});
try {
  for (const size of NARROW_SIZES) {
    const { senders: narrowSenders, close: closeNarrow } = await makeSenders(
      narrowOrigin,
      undefined,
      size,
      '/take',
    );
    // raceguard's HTTP/1.1 single-packet release: the whole burst pipelined in one write.
    const piped = await Http1BurstClient.open(narrowOrigin, { connections: 1, warmupPath: '/' });
    const pipelineBody = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        method: 'POST',
        path: '/take',
        headers,
        body: body.replace('"b"', `"b${i}"`),
      }));
    const withPipeline: Record<string, { send: Sender }> = {
      ...narrowSenders,
      'raceguard-pipeline': {
        send: async (n) => void (await piped.fire(pipelineBody(n), { pipeline: true })),
      },
    };
    for (const [tool, s] of Object.entries(withPipeline)) {
      let exposed = 0;
      for (let b = 0; b < DETECTION_BURSTS; b++) {
        await (await fetch(`${narrowOrigin}/reset`)).arrayBuffer();
        await s.send(size);
        const { orders } = (await (await fetch(`${narrowOrigin}/orders`)).json()) as {
          orders: number;
        };
        if (orders > 1) exposed++;
        else if (orders === 0) throw new Error(`${tool}: no order at all`);
      }
      results.push({
        tool,
        protocol: 'http1',
        requests: size,
        gapMs: null,
        spreadMedianMs: null,
        spreadP95Ms: null,
        detectionRate: exposed / DETECTION_BURSTS,
        window: 'event-loop-turn',
      });
      log(`detection, one event-loop turn, ${size}: ${tool} ${exposed}/${DETECTION_BURSTS}`);
    }
    await closeNarrow();
    piped.close();
  }
} finally {
  narrow.kill();
}

function round(n: number): number {
  return Number(n.toFixed(3));
}

if (args.json) {
  process.stdout.write(`${JSON.stringify({ results }, null, 2)}\n`);
} else {
  const limitOf = (n: number) =>
    results.find((r) => r.tool === 'limit' && r.requests === n)?.spreadMedianMs ?? NaN;
  const fmt = (v: number | null, d = 2) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(d));
  process.stdout.write(
    `${renderTable(
      [
        'tool',
        'protocol',
        'requests',
        'gap ms',
        'spread p50 ms',
        'spread p95 ms',
        '× limit',
        'window',
        'detection',
      ],
      results.map((r) => [
        r.tool,
        r.protocol,
        r.requests,
        r.gapMs ?? '-',
        fmt(r.spreadMedianMs),
        fmt(r.spreadP95Ms),
        r.spreadMedianMs === null ? '-' : fmt(r.spreadMedianMs / limitOf(r.requests)),
        r.window ?? '-',
        r.detectionRate === null ? '-' : `${(r.detectionRate * 100).toFixed(0)}%`,
      ]),
    )}\n\nspread: ${BURSTS} bursts per cell, arrival = body complete at the server; detection: ${DETECTION_BURSTS} bursts of ${DETECTION_SIZE} against the lab's unsafe inventory endpoint (stock 1; window db-round-trip), and ${DETECTION_BURSTS} bursts of ${NARROW_SIZES.join(' and ')} against an in-memory counter whose window is one event-loop turn (event-loop-turn); exposed = more than one order\n`,
  );
}
