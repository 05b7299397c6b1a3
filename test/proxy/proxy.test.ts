/**
 * `raceguard proxy` against the real server: clients of every protocol
 * path pass through unchanged (node-postgres simple and extended,
 * postgres.js pipelining and cancel, psql with its SSL request and COPY,
 * LISTEN/NOTIFY), every statement is recorded with its parameters, its
 * transaction and isolation level, database-side delays widen a real
 * lost-update window (control: without the delay the same code loses
 * nothing), and bad input ends one connection, never the proxy.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import postgres from 'postgres';
import { startPgProxy, type PgProxy } from '../../packages/cli/src/proxy/proxy.js';
import { parseDbDelay } from '../../packages/cli/src/proxy/db-delays.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';
import { runCli } from '../helpers/cli.js';
import { chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  initCluster,
  launchServer,
} from '../../packages/raceguard/src/testing/embedded-cluster.js';
import { freePort } from '../../packages/raceguard/src/testing/free-port.js';
import { PrismaPg } from '@prisma/adapter-pg';
import { prismaClientClass } from '../helpers/prisma.js';

describe('raceguard proxy', { timeout: 120_000 }, () => {
  let db: TestDatabase;
  let proxy: PgProxy;
  let url: string;
  before(async () => {
    db = await openTestDatabase(10);
    await db.pool.query(`CREATE TABLE products (id int primary key, stock int not null);
      CREATE TABLE notes (id int, body text)`);
    const upstream = new URL(db.url);
    proxy = await startPgProxy({ upstream: `postgres://${upstream.host}`, control: {} });
    const through = new URL(db.url);
    through.host = proxy.address;
    url = through.toString();
  });
  after(async () => {
    await proxy.close();
    await db.close();
  });

  const client = async (): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url, options: `-c search_path=${db.schema}` });
    await c.connect();
    return c;
  };

  it('node-postgres: simple and extended queries pass through and are recorded with parameters, transaction and isolation', async () => {
    await fetch(`${proxy.controlUrl}/trace`, { method: 'DELETE' });
    await fetch(`${proxy.controlUrl}/label`, { method: 'PUT', body: '{"label":"POST /buy"}' });
    const c = await client();
    try {
      await c.query(
        'INSERT INTO products VALUES (1, 10) ON CONFLICT (id) DO UPDATE SET stock = 10',
      );
      await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      const read = await c.query('SELECT stock FROM products WHERE id = $1', [1]);
      assert.equal(read.rows[0].stock, 10);
      await c.query('UPDATE products SET stock = $1 WHERE id = $2', [9, 1]);
      await c.query('COMMIT');
    } finally {
      await c.end();
      await fetch(`${proxy.controlUrl}/label`, { method: 'PUT', body: '{"label":null}' });
    }
    const trace = (await (await fetch(`${proxy.controlUrl}/trace`)).json()) as {
      statements: {
        text: string;
        params: string[];
        label: string | null;
        transaction: number | null;
        isolation: string | null;
        results: { command: string; rows: number }[];
        rowsReturned: number;
        statements: { kind: string; tables: string[] }[];
      }[];
    };
    const mine = trace.statements.filter((s) => s.label === 'POST /buy');
    const select = mine.find((s) => s.text.startsWith('SELECT stock'));
    const update = mine.find((s) => s.text.startsWith('UPDATE products'));
    assert.ok(select && update, JSON.stringify(mine));
    assert.deepEqual(select.params, ['1']);
    assert.equal(select.rowsReturned, 1);
    assert.equal(select.statements[0]?.kind, 'SELECT');
    assert.deepEqual(select.statements[0]?.tables, ['products']);
    assert.deepEqual(update.params, ['9', '1']);
    assert.deepEqual(update.results, [{ command: 'UPDATE', rows: 1 }]);
    assert.equal(select.isolation, 'repeatable read');
    assert.ok(select.transaction !== null && select.transaction === update.transaction);
    const insert = mine.find((s) => s.text.startsWith('INSERT'));
    assert.equal(insert?.transaction, null, 'autocommit outside the transaction');
  });

  it('postgres.js: 50 pipelined queries on one connection come back in order; a cancel request reaches the server', async () => {
    const sql = postgres(url, {
      max: 1,
      connection: { search_path: db.schema },
      onnotice: () => undefined,
    });
    try {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) => sql`SELECT ${i}::int AS i, pg_sleep(0.001)`),
      );
      assert.deepEqual(
        answers.map((r) => r[0]?.i),
        Array.from({ length: 50 }, (_, i) => i),
      );
      const started = performance.now();
      const slow = sql`SELECT pg_sleep(30)`;
      const outcome = slow.then(
        () => 'finished',
        (error: { code?: string }) => error.code,
      );
      setTimeout(() => void slow.cancel(), 200);
      assert.equal(await outcome, '57014'); // query_canceled
      assert.ok(performance.now() - started < 10_000);
    } finally {
      await sql.end();
    }
  });

  it('Prisma through @prisma/adapter-pg: raw queries and an interactive transaction pass through and are recorded', async () => {
    const PrismaClient = await prismaClientClass('postgresql');
    const prisma = new PrismaClient({
      adapter: new PrismaPg(
        { connectionString: url, options: `-c search_path=${db.schema}`, max: 2 },
        { schema: db.schema },
      ),
    });
    try {
      await prisma.$executeRawUnsafe(
        'INSERT INTO products VALUES ($1, $2) ON CONFLICT (id) DO NOTHING',
        7,
        70,
      );
      const stock = await prisma.$transaction(async (tx) => {
        const rows = (await tx.$queryRawUnsafe(
          'SELECT stock FROM products WHERE id = $1 FOR UPDATE',
          7,
        )) as { stock: number }[];
        await tx.$executeRawUnsafe(
          'UPDATE products SET stock = $1 WHERE id = $2',
          Number(rows[0]?.stock) - 1,
          7,
        );
        return Number(rows[0]?.stock) - 1;
      });
      assert.equal(stock, 69);
    } finally {
      await prisma.$disconnect();
    }
    const { statements } = proxy.recording.since();
    const locked = statements.find((s) => s.text.includes('FOR UPDATE') && s.params[0] === '7');
    assert.equal(locked?.statements[0]?.locking, 'FOR UPDATE');
    const update = statements.find(
      (s) => s.text.startsWith('UPDATE products') && s.params[1] === '7',
    );
    assert.ok(locked?.transaction !== null && locked?.transaction === update?.transaction);
  });

  it('authentication passes through: the upstream asked this suite for its password', async () => {
    // The suite's server authenticates TCP clients by password (SCRAM on an embedded
    // server); the proxy never sees the password, it relays the exchange.
    const c = await client();
    try {
      const { rows } = await c.query(
        "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' ORDER BY line_number LIMIT 1",
      );
      if (rows[0]?.auth_method === 'trust') return; // a trust server (DATABASE_URL): nothing to relay
      assert.match(String(rows[0]?.auth_method), /scram-sha-256|md5|password/);
    } finally {
      await c.end();
    }
  });

  it('messages split across many TCP chunks both ways: a 4 MB parameter, a 4 MB value and 20,000 rows arrive whole', async () => {
    const c = await client();
    try {
      const big = 'x'.repeat(4 * 1024 * 1024);
      const echoed = await c.query('SELECT length($1::text) AS n, md5($1::text) AS h', [big]);
      assert.equal(echoed.rows[0].n, big.length);
      const value = await c.query("SELECT repeat('y', 4 * 1024 * 1024) AS v");
      assert.equal(value.rows[0].v.length, 4 * 1024 * 1024);
      const rows = await c.query(
        'SELECT g AS i, md5(g::text) AS h FROM generate_series(1, 20000) g',
      );
      assert.equal(rows.rows.length, 20_000);
      assert.equal(rows.rows[19_999].i, 20_000);
    } finally {
      await c.end();
    }
  });

  it('LISTEN/NOTIFY: a notification sent directly reaches a listener behind the proxy', async () => {
    const c = await client();
    try {
      await c.query('LISTEN raceguard_proxy');
      const received = new Promise<string | undefined>((resolve) =>
        c.on('notification', (n) => resolve(n.payload)),
      );
      await db.pool.query(`NOTIFY raceguard_proxy, 'hello'`);
      assert.equal(await received, 'hello');
    } finally {
      await c.end();
    }
  });

  it('psql: the SSL request is refused, then a plain session runs COPY FROM STDIN', async () => {
    const target = new URL(url);
    const run = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(
        'psql',
        [
          `postgresql://${target.username}:${target.password}@${target.host}${target.pathname}?sslmode=prefer&options=-csearch_path%3D${db.schema}`,
          '-v',
          'ON_ERROR_STOP=1',
          '-c',
          '\\copy notes from stdin',
          '-c',
          'SELECT count(*) FROM notes',
          '-At',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      child.stdin.end('1\tone\n2\ttwo\n3\tthree\n\\.\n');
      child.on('close', (code) => resolve({ code, out }));
    });
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /^3$/m);
  });

  it('a database-side delay on the read opens a lost update between two purchases 250 ms apart; without it the same two lose nothing', async () => {
    const [a, b] = [await client(), await client()];
    const buy = async (c: pg.Client): Promise<void> => {
      const { rows } = await c.query('SELECT stock FROM products WHERE id = 2');
      await c.query('UPDATE products SET stock = $1 WHERE id = 2', [Number(rows[0].stock) - 1]);
    };
    // The second purchase starts 250 ms after the first: far longer than the first's two
    // statements take, so only a held-back read lets them overlap.
    const twoPurchases = async (): Promise<number> => {
      await db.pool.query(
        'DELETE FROM products WHERE id = 2; INSERT INTO products VALUES (2, 100)',
      );
      const first = buy(a);
      await new Promise((resolve) => setTimeout(resolve, 250));
      await Promise.all([first, buy(b)]);
      const { rows } = await db.pool.query('SELECT stock FROM products WHERE id = 2');
      return Number(rows[0].stock);
    };
    try {
      assert.equal(await twoPurchases(), 98, 'control: no delay, no lost sale');
      proxy.setDelays([parseDbDelay('SELECT products=600')]);
      assert.equal(await twoPurchases(), 99, 'the delay let the second purchase erase the first');
    } finally {
      proxy.setDelays([]);
      await a.end();
      await b.end();
    }
  });

  it('the delay holds back only matching statements, by at least its length', async () => {
    const c = await client();
    try {
      proxy.setDelays([parseDbDelay('/FROM products WHERE id = 1/=300')]);
      let started = performance.now();
      await c.query('SELECT stock FROM products WHERE id = 1');
      assert.ok(performance.now() - started >= 290, 'the matching statement was held back');
      started = performance.now();
      await c.query('SELECT stock FROM products WHERE id = 2');
      assert.ok(performance.now() - started < 250, 'another statement was not');
    } finally {
      proxy.setDelays([]);
      await c.end();
    }
  });

  it('bad input: garbage bytes, a client gone mid-message and 200 connections at once leave the proxy serving and leak nothing', async () => {
    const garbage = connect(proxy.port, '127.0.0.1');
    const answer = await new Promise<string>((resolve) => {
      let out = '';
      garbage.on('data', (d: Buffer) => (out += d.toString('latin1')));
      garbage.on('close', () => resolve(out));
      garbage.on('error', () => undefined);
      garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    });
    assert.match(answer, /raceguard proxy/);
    const cut = connect(proxy.port, '127.0.0.1');
    await new Promise((resolve) => cut.on('connect', resolve));
    cut.end(Buffer.from([0, 0, 0, 40, 0, 3])); // a startup message cut short
    const clients = await Promise.all(Array.from({ length: 200 }, client));
    const sums = await Promise.all(clients.map((c, i) => c.query('SELECT $1::int AS i', [i])));
    assert.deepEqual(
      sums.map((r) => r.rows[0].i),
      Array.from({ length: 200 }, (_, i) => i),
    );
    await Promise.all(clients.map((c) => c.end()));
    for (let i = 0; i < 100 && proxy.connections() > 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(proxy.connections(), 0, 'every connection closed');
  });

  it('an unreachable upstream is a clear error to the client', async () => {
    const dead = await startPgProxy({ upstream: 'postgres://127.0.0.1:1' });
    try {
      const c = new pg.Client({ connectionString: `postgres://postgres@${dead.address}/test` });
      await assert.rejects(
        c.connect(),
        /raceguard proxy: the upstream 127\.0\.0\.1:1 is unreachable/,
      );
    } finally {
      await dead.close();
    }
  });

  it('an upstream that stalls, then one that goes away mid-session: the client errors, the proxy keeps no connection', async () => {
    const held: import('node:net').Socket[] = [];
    const stalling = createServer((socket) => held.push(socket)); // accepts, never answers
    await new Promise<void>((resolve) => stalling.listen(0, '127.0.0.1', resolve));
    const port = (stalling.address() as import('node:net').AddressInfo).port;
    const stalled = await startPgProxy({ upstream: `postgres://127.0.0.1:${port}` });
    try {
      const c = new pg.Client({
        connectionString: `postgres://postgres@${stalled.address}/test`,
        connectionTimeoutMillis: 300,
      });
      await assert.rejects(c.connect(), /timeout/i);
      for (const socket of held) socket.destroy(); // the upstream goes away
      for (let i = 0; i < 50 && stalled.connections() > 0; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(stalled.connections(), 0);
    } finally {
      await stalled.close();
      stalling.close();
    }
    // Mid-session: the server ends the backend; the client sees its connection end.
    const c = await client();
    c.on('error', () => undefined);
    const { rows } = await c.query('SELECT pg_backend_pid() AS pid');
    const ended = new Promise<string>((resolve) =>
      c.once('error', (e: Error) => resolve(e.message)),
    );
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0].pid]);
    // The server's last words reach the client before the connection ends.
    assert.match(await ended, /terminating connection due to administrator command/);
    await assert.rejects(c.query('SELECT 1'));
    await c.end().catch(() => undefined);
  });

  it('control: a bad delay is refused with 400 and changes nothing', async () => {
    proxy.setDelays([parseDbDelay('UPDATE=5')]);
    const response = await fetch(`${proxy.controlUrl}/delays`, {
      method: 'PUT',
      body: JSON.stringify({ delays: [{ pattern: 'SELECT products', ms: -1 }] }),
    });
    assert.equal(response.status, 400);
    assert.match(((await response.json()) as { error: string }).error, /ms/);
    assert.deepEqual(proxy.delays(), [{ pattern: 'UPDATE', ms: 5 }]);
    proxy.setDelays([]);
    assert.throws(() => parseDbDelay('SELECT products'), /PATTERN=MS/);
    assert.throws(() => parseDbDelay('/(/=10'), /regular expression/);
  });

  it('the command: prints its addresses, proxies, and stops with exit 0 on SIGTERM', async () => {
    const upstream = new URL(db.url);
    let printed = '';
    const run = await runCli(
      [
        'proxy',
        '--upstream',
        `postgres://${upstream.host}`,
        '--listen',
        '127.0.0.1:0',
        '--control',
        '127.0.0.1:0',
      ],
      {},
      (stderr, child) => {
        if (printed !== '' || !/control http/.test(stderr)) return;
        printed = stderr;
        const through = new URL(db.url);
        through.host = `127.0.0.1:${/listening on 127\.0\.0\.1:(\d+)/.exec(stderr)?.[1]}`;
        const c = new pg.Client({ connectionString: through.toString() });
        void c
          .connect()
          .then(() => c.query('SELECT 42 AS answer'))
          .then((r) => {
            printed += `answer ${r.rows[0].answer}`;
            return c.end();
          })
          .finally(() => child.kill('SIGTERM'));
      },
    );
    assert.equal(run.status, 0, run.stderr);
    assert.match(printed, /answer 42/);
    assert.match(run.stderr, /stopped \(SIGTERM\), \d+ statements recorded/);
    const bad = await runCli(['proxy', '--upstream', 'mysql://x', '--listen', '127.0.0.1:0']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /postgres:\/\/host:port/);
  });
});

describe('raceguard proxy: a dedicated server', { timeout: 120_000 }, () => {
  let cluster: Awaited<ReturnType<typeof initCluster>>;
  let server: Awaited<ReturnType<typeof launchServer>>;
  let port: number;
  before(async () => {
    cluster = await initCluster({
      user: 'postgres',
      password: 'owner-secret',
      onLog: () => undefined,
    });
    const hba = join(cluster.folder, 'auth_hba.conf');
    await writeFile(
      hba,
      [
        'local all all trust',
        'host all trusted 127.0.0.1/32 trust',
        'host all capped 127.0.0.1/32 trust',
        'host all md5user 127.0.0.1/32 md5',
        'host all all 127.0.0.1/32 scram-sha-256',
        '',
      ].join('\n'),
    );
    if (cluster.ids.uid !== undefined)
      await chown(hba, cluster.ids.uid, cluster.ids.gid ?? cluster.ids.uid);
    port = await freePort();
    server = await launchServer(cluster, {
      port,
      postgresFlags: [
        '-c',
        `hba_file=${hba}`,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'max_connections=560',
      ],
      removeOnStop: cluster.folder,
    });
    const owner = new pg.Client({
      connectionString: `postgres://postgres:owner-secret@127.0.0.1:${port}/postgres`,
    });
    await owner.connect();
    await owner.query('CREATE ROLE trusted LOGIN');
    await owner.query('CREATE ROLE capped LOGIN CONNECTION LIMIT 20');
    await owner.query("SET password_encryption = 'md5'");
    await owner.query("CREATE ROLE md5user LOGIN PASSWORD 'md5-secret'");
    await owner.query("SET password_encryption = 'scram-sha-256'");
    await owner.query("CREATE ROLE scramuser LOGIN PASSWORD 'scram-secret'");
    await owner.end();
  });
  after(async () => {
    await server.stop();
  });
  const backends = async (user: string): Promise<number> => {
    const owner = new pg.Client({
      connectionString: `postgres://postgres:owner-secret@127.0.0.1:${port}/postgres`,
    });
    await owner.connect();
    const { rows } = await owner.query(
      'SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1',
      [user],
    );
    await owner.end();
    return rows[0].n as number;
  };

  it('trust, md5 and SCRAM-SHA-256 to the upstream: the proxy relays each exchange and never needs a password', async () => {
    const proxy = await startPgProxy({ upstream: `postgres://127.0.0.1:${port}` });
    try {
      const through = (user: string, password?: string): string =>
        `postgres://${user}${password === undefined ? '' : `:${password}`}@${proxy.address}/postgres`;
      for (const [user, password, method] of [
        ['trusted', undefined, 'trust'],
        ['md5user', 'md5-secret', 'md5'],
        ['scramuser', 'scram-secret', 'scram-sha-256'],
      ] as const) {
        const c = new pg.Client({ connectionString: through(user, password) });
        await c.connect();
        const { rows } = await c.query('SELECT current_user AS who');
        assert.equal(rows[0].who, user, method);
        await c.end();
      }
      // Control: a wrong password is refused by the server, through the proxy.
      const wrong = new pg.Client({ connectionString: through('scramuser', 'nope') });
      await assert.rejects(wrong.connect(), /password authentication failed/);
    } finally {
      await proxy.close();
    }
  });

  it("an upstream that ends after a large reply: a slow client still reads all of it, then the server's FATAL", async () => {
    const proxy = await startPgProxy({ upstream: `postgres://127.0.0.1:${port}` });
    try {
      const socket = connect(proxy.port, '127.0.0.1');
      const params = Buffer.from('user\0trusted\0database\0postgres\0\0');
      const startup = Buffer.alloc(8);
      startup.writeInt32BE(8 + params.length);
      startup.writeInt32BE(196608, 4); // protocol 3.0
      const text = Buffer.from(
        "SELECT repeat('x', 20000000); SELECT pg_terminate_backend(pg_backend_pid())\0",
      );
      const query = Buffer.alloc(5);
      query.write('Q');
      query.writeInt32BE(4 + text.length, 1);
      // Trust asks nothing back: the query rides behind the startup message.
      socket.write(Buffer.concat([startup, params, query, text]));
      // A slow reader: the proxy's writes back up, so the upstream's close
      // arrives while the tail of the reply still waits in the proxy.
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        socket.pause();
        setTimeout(() => socket.resume(), 2);
      });
      await new Promise((resolve) => socket.on('close', resolve));
      const received = Buffer.concat(chunks);
      assert.ok(received.length > 20_000_000, `${received.length} bytes`);
      assert.match(
        received.subarray(-400).toString('latin1'),
        /terminating connection due to administrator command/,
      );
      assert.equal(proxy.connections(), 0);
    } finally {
      await proxy.close();
    }
  });

  it("500 connections at once all served; past the server's limit its own error reaches each client; nothing leaks upstream", async () => {
    const proxy = await startPgProxy({ upstream: `postgres://127.0.0.1:${port}` });
    try {
      const open = (user: string): Promise<pg.Client> => {
        const c = new pg.Client({
          connectionString: `postgres://${user}@${proxy.address}/postgres`,
        });
        c.on('error', () => undefined);
        return c.connect().then(() => c);
      };
      const clients = await Promise.all(Array.from({ length: 500 }, () => open('trusted')));
      assert.equal(proxy.connections(), 500);
      const answers = await Promise.all(clients.map((c, i) => c.query('SELECT $1::int AS i', [i])));
      assert.deepEqual(
        answers.map((r) => r.rows[0].i),
        Array.from({ length: 500 }, (_, i) => i),
      );
      assert.equal(await backends('trusted'), 500);
      await Promise.all(clients.map((c) => c.end()));
      // Past a limit (the role may hold 20): the server refuses the rest, in its words.
      const capped = await Promise.allSettled(Array.from({ length: 60 }, () => open('capped')));
      const held = capped.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const refused = capped.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
      assert.equal(held.length, 20);
      assert.equal(refused.length, 40);
      for (const reason of refused) assert.match(reason, /too many connections for role "capped"/);
      await Promise.all(held.map((c) => c.end()));
      for (let i = 0; i < 200 && proxy.connections() > 0; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(proxy.connections(), 0, 'every client connection closed');
      for (
        let i = 0;
        i < 100 && (await backends('trusted')) + (await backends('capped')) > 0;
        i += 1
      ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(
        (await backends('trusted')) + (await backends('capped')),
        0,
        'no upstream connection left',
      );
      const after = await open('trusted');
      assert.equal((await after.query('SELECT 1 AS one')).rows[0].one, 1, 'still serving');
      await after.end();
    } finally {
      await proxy.close();
    }
  });
});
