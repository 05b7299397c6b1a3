/**
 * Read-your-own-writes on a real streaming replica (a primary and a hot
 * standby started for this file, with real, controllable replay lag):
 * 10,000 write-then-read sessions at lags from 0 to 500 ms see every write
 * of their own; beside them, reads from a random replica and Rails-style
 * "primary for 2 s after a write" serve stale data once the lag passes
 * their guess. A replica stopped, restarted and promoted never serves a
 * stale read. Forged, garbled and foreign tokens send the read to the
 * primary.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { createServer } from 'node:http';
import {
  expressReplicaSession,
  replicaSessionOf,
} from '../../packages/raceguard/src/http/replica-session.js';
import { fastifyReplicaSession } from '../../packages/raceguard/src/http/fastify.js';
import { honoReplicaSession } from '../../packages/raceguard/src/http/hono.js';
import { SessionTokens } from '../../packages/raceguard/src/postgres/session-tokens.js';
import { transaction } from '../../packages/raceguard/src/postgres/transaction.js';
import {
  ReplicaRouter,
  isReadOnlyStatement,
} from '../../packages/raceguard/src/postgres/replica-router.js';
import {
  startReplicatedPostgres,
  type ReplicatedPostgres,
} from '../../packages/raceguard/src/testing/replication.js';

describe('ReplicaRouter on a real streaming replica', { timeout: 300_000 }, () => {
  let pair: ReplicatedPostgres;
  let primary: pg.Pool;
  let replica: pg.Pool;
  const pools: pg.Pool[] = [];
  const pool = (url: string, max = 40): pg.Pool => {
    const p = new pg.Pool({ connectionString: url, max });
    p.on('error', () => undefined);
    pools.push(p);
    return p;
  };
  before(async () => {
    pair = await startReplicatedPostgres();
    primary = pool(pair.primaryUrl);
    replica = pool(pair.replicaUrl);
    await primary.query('CREATE TABLE profiles (id int PRIMARY KEY, name text NOT NULL)');
    await primary.query(
      `INSERT INTO profiles SELECT g, 'initial' FROM generate_series(0, 9999) AS g`,
    );
    // Until the standby has the table and its rows.
    for (;;) {
      const { rows } = await replica.query(
        "SELECT count(*)::int AS n FROM pg_class WHERE relname = 'profiles'",
      );
      if (
        rows[0].n === 1 &&
        (await replica.query('SELECT count(*)::int AS n FROM profiles')).rows[0].n === 10_000
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  });
  after(async () => {
    for (const p of pools) await p.end();
    await pair.stop();
  });

  /** Session i writes a new name, then reads its profile the strategy's way; true if the read was stale. */
  type Strategy = (id: number, name: string) => Promise<{ stale: boolean; fromReplica: boolean }>;

  it('10,000 write-then-read sessions at lags from 0 to 500 ms: never a stale read; most reads from the replica when it keeps up', async () => {
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 60, pollMs: 10 });
    const throughRouter: Strategy = async (id, name) => {
      const { token } = await router.write((db) =>
        db.query('UPDATE profiles SET name = $1 WHERE id = $2', [name, id]),
      );
      const { result, source } = await router.read(
        (db) => db.query('SELECT name FROM profiles WHERE id = $1', [id]),
        { token },
      );
      return { stale: result.rows[0]?.name !== name, fromReplica: source === 'replica' };
    };
    const byLag: Record<number, { stale: number; replica: number }> = {};
    let session = 0;
    for (const lagMs of [0, 50, 150, 300, 500]) {
      await pair.setApplyDelay(lagMs);
      const counts = { stale: 0, replica: 0 };
      for (let round = 0; round < 20; round++) {
        const outcomes = await Promise.all(
          Array.from({ length: 100 }, () => {
            const id = session++ % 10_000;
            return throughRouter(id, `name-${session}`);
          }),
        );
        for (const o of outcomes) {
          if (o.stale) counts.stale++;
          if (o.fromReplica) counts.replica++;
        }
      }
      byLag[lagMs] = counts;
    }
    await pair.setApplyDelay(0);
    await router.close();
    process.stderr.write(
      `read-your-writes by lag (stale, from replica of 2000): ${JSON.stringify(byLag)}\n`,
    );
    assert.equal(session, 10_000);
    for (const [lag, counts] of Object.entries(byLag)) {
      assert.equal(counts.stale, 0, `lag ${lag} ms: ${JSON.stringify(counts)}`);
    }
    assert.ok(
      (byLag[0]?.replica ?? 0) > 1000,
      `without lag most reads go to the replica: ${JSON.stringify(byLag)}`,
    );
  });

  it('the guesses fail once the lag passes them: a random replica at 150 ms, "primary for 2 s" at 3.5 s; the router does not', async () => {
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 50, pollMs: 10 });
    await pair.setApplyDelay(150);
    let randomStale = 0;
    await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        await primary.query('UPDATE profiles SET name = $1 WHERE id = $2', [`r${i}`, i]);
        const { rows } = await replica.query('SELECT name FROM profiles WHERE id = $1', [i]);
        if (rows[0].name !== `r${i}`) randomStale++;
      }),
    );
    assert.ok(randomStale > 0, 'a random replica serves stale reads under lag');

    await pair.setApplyDelay(3500);
    const writes = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const id = 200 + i;
        const { token } = await router.write((db) =>
          db.query('UPDATE profiles SET name = $1 WHERE id = $2', [`late${i}`, id]),
        );
        return { id, name: `late${i}`, token, at: performance.now() };
      }),
    );
    // The people come back 2.1 s later: "primary for 2 s after a write" sends them to the replica.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    let delayStale = 0;
    let routerStale = 0;
    await Promise.all(
      writes.map(async (w) => {
        const guess = performance.now() - w.at < 2000 ? primary : replica;
        if (
          (await guess.query('SELECT name FROM profiles WHERE id = $1', [w.id])).rows[0].name !==
          w.name
        )
          delayStale++;
        const { result } = await router.read(
          (db) => db.query('SELECT name FROM profiles WHERE id = $1', [w.id]),
          { token: w.token },
        );
        if (result.rows[0]?.name !== w.name) routerStale++;
      }),
    );
    await pair.setApplyDelay(0);
    await router.close();
    assert.ok(delayStale > 0, '"primary for 2 s" serves stale reads at 3.5 s of lag');
    assert.equal(routerStale, 0);
  });

  it('tokens that are garbled, forged or from another cluster send the read to the primary', async () => {
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 2000 });
    const { token } = await router.write((db) =>
      db.query("UPDATE profiles SET name = 'tok' WHERE id = 500"),
    );
    const [, systemId] = token.split('.');
    const read = (t: string) => router.read((db) => db.query('SELECT 1'), { token: t });
    for (const bad of ['', 'v1', 'garbage', 'v2.1.1', `v1.${systemId}.zz`, 'v1.123.1']) {
      assert.equal((await read(bad)).source, 'primary', bad);
    }
    const started = performance.now();
    assert.equal((await read(`v1.${systemId}.FFFFFFFFFFFF`)).source, 'primary');
    assert.ok(
      performance.now() - started < 1000,
      'a position beyond the primary is not waited for',
    );
    await assert.rejects(
      router.read((db) => db.query('SELECT 1'), { token: 5 as never }),
      /options\.token must be a string/,
    );
    await router.close();
  });

  it('a session object routes by statement and keeps its token', async () => {
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 500, pollMs: 10 });
    const session = router.session();
    await session.query("UPDATE profiles SET name = 'via session' WHERE id = 600");
    assert.match(session.token ?? '', /^v1\.\d+\.[0-9A-F]+$/);
    const { rows } = await session.query('SELECT name FROM profiles WHERE id = $1', [600]);
    assert.equal(rows[0]?.name, 'via session');
    // A SELECT that writes: the replica refuses it (25006), the primary runs it.
    await primary.query('CREATE SEQUENCE IF NOT EXISTS s');
    const next = await session.query({ text: "SELECT nextval('s') AS n" });
    assert.equal(Number(next.rows[0]?.n) > 0, true);
    // A transaction goes through write: the token covers its commit.
    const { token } = await router.write((db) =>
      transaction(db, async (tx) => {
        await tx.query("UPDATE profiles SET name = 'in tx' WHERE id = 601");
        await tx.query("UPDATE profiles SET name = 'in tx' WHERE id = 602");
      }),
    );
    const after = await router.read(
      (db) => db.query("SELECT count(*)::int AS n FROM profiles WHERE name = 'in tx'"),
      { token },
    );
    assert.equal(after.result.rows[0]?.n, 2);
    assert.equal(isReadOnlyStatement('SELECT * FROM t WHERE a = 1'), true);
    assert.equal(isReadOnlyStatement('/* c */ WITH x AS (SELECT 1) SELECT * FROM x'), true);
    assert.equal(isReadOnlyStatement("SELECT 'DELETE' AS word"), true);
    assert.equal(isReadOnlyStatement('SELECT * FROM t FOR UPDATE'), false);
    assert.equal(
      isReadOnlyStatement('WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d'),
      false,
    );
    assert.equal(isReadOnlyStatement('UPDATE t SET a = 1'), false);
    await router.close();
  });

  it('across two API instances: the cookie carries the token, so the next page shows the write (without it, the lagging replica does not)', async () => {
    await pair.setApplyDelay(2000);
    const instances = await Promise.all(
      [0, 1].map(async () => {
        const router = new ReplicaRouter({
          primary,
          replicas: [replica],
          maxWaitMs: 20,
          pollMs: 10,
        });
        const app = Fastify();
        await app.register(fastifyReplicaSession(router, { secure: false }));
        app.put('/profile/:id', async (request) => {
          const { id } = request.params as { id: string };
          await replicaSessionOf(request).query('UPDATE profiles SET name = $1 WHERE id = $2', [
            (request.body as { name: string }).name,
            Number(id),
          ]);
          return { ok: true };
        });
        app.get('/profile/:id', async (request) => {
          const { id } = request.params as { id: string };
          const { rows } = await replicaSessionOf(request).query(
            'SELECT name FROM profiles WHERE id = $1',
            [Number(id)],
          );
          return rows[0];
        });
        return { app, router };
      }),
    );
    const [a, b] = instances as [(typeof instances)[0], (typeof instances)[0]];
    const put = await a.app.inject({
      method: 'PUT',
      url: '/profile/700',
      payload: { name: 'new name' },
    });
    const cookie = String(put.headers['set-cookie']);
    assert.match(
      cookie,
      /^rg_session=v1\.\d+\.[0-9A-F]+; Path=\/; HttpOnly; SameSite=Lax; Max-Age=60$/,
    );
    const withCookie = await b.app.inject({
      url: '/profile/700',
      headers: { cookie: cookie.split(';')[0] as string },
    });
    assert.equal(withCookie.json().name, 'new name');
    const without = await b.app.inject({ url: '/profile/700' });
    assert.notEqual(
      without.json().name,
      'new name',
      'control: no token, the lagging replica answers',
    );
    for (const { app, router } of instances) {
      await app.close();
      await router.close();
    }

    // Express and Hono, with the token in a header.
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 20, pollMs: 10 });
    const ex = express();
    ex.use(expressReplicaSession(router, { transport: 'header' }));
    ex.put('/p/:id', (req, res, next) => {
      replicaSessionOf(req)
        .query("UPDATE profiles SET name = 'express' WHERE id = $1", [Number(req.params.id)])
        .then(() => res.json({ ok: true }), next);
    });
    const server = createServer(ex);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const response = await fetch(`http://127.0.0.1:${port}/p/701`, { method: 'PUT' });
    const token = response.headers.get('x-raceguard-session');
    server.close();
    assert.match(token ?? '', /^v1\./);
    const hono = new Hono();
    hono.use('*', honoReplicaSession(router, { transport: 'header' }));
    hono.get('/p/:id', async (c) => {
      const { rows } = await replicaSessionOf(c).query('SELECT name FROM profiles WHERE id = $1', [
        Number(c.req.param('id')),
      ]);
      return c.json(rows[0]);
    });
    const read = await hono.request('/p/701', {
      headers: { 'x-raceguard-session': token as string },
    });
    assert.equal(((await read.json()) as { name: string }).name, 'express');
    await router.close();
    await pair.setApplyDelay(0);
    assert.throws(
      () => fastifyReplicaSession(router, { transport: 'pigeon' } as never),
      /transport/,
    );
    assert.throws(() => expressReplicaSession({} as never), /router must be a ReplicaRouter/);
  });

  it('SessionTokens: per user, bounded, expiring', () => {
    let now = 0;
    const tokens = new SessionTokens({ maxEntries: 2, maxAgeMs: 100, now: () => now });
    tokens.set('ann', 'v1.1.A');
    tokens.set('bob', 'v1.1.B');
    tokens.set('cy', 'v1.1.C');
    assert.equal(tokens.get('ann'), undefined, 'the oldest left first');
    assert.equal(tokens.get('cy'), 'v1.1.C');
    now = 101;
    assert.equal(tokens.get('cy'), undefined, 'expired');
    assert.throws(() => tokens.set('', 'x'), /key must be a non-empty string/);
  });

  it('refuses bad options at construction', () => {
    assert.throws(
      () => new ReplicaRouter({ primary: {} as never, replicas: [] }),
      /options\.primary/,
    );
    assert.throws(
      () => new ReplicaRouter({ primary, replicas: [{}] as never }),
      /options\.replicas\[0\]/,
    );
    assert.throws(() => new ReplicaRouter({ primary, replicas: [], maxWaitMs: 0 }), /maxWaitMs/);
    assert.throws(
      () => new ReplicaRouter({ primary, replicas: [], wait: 1 } as never),
      /options\.wait/,
    );
  });

  it('regression: a SELECT that calls a writing function on the primary moves the session token (no stale read after it)', async () => {
    await primary.query(
      `CREATE TABLE bumped (id int PRIMARY KEY, n int NOT NULL); INSERT INTO bumped VALUES (1, 5);
       CREATE FUNCTION bump() RETURNS int LANGUAGE sql AS $$ UPDATE bumped SET n = n + 1 WHERE id = 1 RETURNING n $$`,
    );
    const replicaN = async () =>
      (await replica.query('SELECT n FROM bumped WHERE id = 1').catch(() => ({ rows: [] }))).rows[0]
        ?.n as number | undefined;
    while ((await replicaN()) !== 5) await new Promise((resolve) => setTimeout(resolve, 10));
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 20, pollMs: 10 });
    try {
      await pair.setApplyDelay(1000);
      const session = router.session();
      await session.query('UPDATE bumped SET n = 0 WHERE id = 1'); // the replica is 1 s behind
      await new Promise((resolve) => setTimeout(resolve, 500));
      // Not replayed yet: the SELECT goes to the primary, where bump() writes n = 1.
      assert.deepEqual((await session.query('SELECT bump() AS n')).rows, [{ n: 1 }]);
      // Once the replica has the first write but not bump()'s, a read must not go there.
      while ((await replicaN()) !== 0) await new Promise((resolve) => setTimeout(resolve, 5));
      assert.deepEqual((await session.query('SELECT n FROM bumped WHERE id = 1')).rows, [{ n: 1 }]);
    } finally {
      await pair.setApplyDelay(0);
      await router.close();
    }
  });

  it('regression: a read on a frozen replica is bounded and served by the primary; a recovery conflict (40001) is retried there', async () => {
    await primary.query(
      `CREATE FUNCTION probe() RETURNS text LANGUAGE plpgsql AS $$ BEGIN
         IF pg_is_in_recovery() THEN
           RAISE EXCEPTION 'canceling statement due to conflict with recovery' USING ERRCODE = '40001';
         END IF;
         RETURN 'primary'; END $$`,
    );
    const single = pool(pair.replicaUrl, 1);
    for (;;) {
      const { rows } = await single.query(
        "SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'probe'",
      );
      if (rows[0].n === 1) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const router = new ReplicaRouter({
      primary,
      replicas: [single],
      pollMs: 10_000,
      replicaTimeoutMs: 300,
    });
    try {
      const conflict = await router.read((db) => db.query('SELECT probe() AS p'));
      assert.equal(conflict.source, 'primary');
      assert.deepEqual(conflict.result.rows, [{ p: 'primary' }]);
      // Freeze the replica's one backend (SIGSTOP): the read on it never answers.
      const pid = (await single.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
      process.kill(pid, 'SIGSTOP');
      try {
        const started = performance.now();
        const frozen = await router.read((db) => db.query('SELECT 42 AS n'));
        const took = performance.now() - started;
        assert.equal(frozen.source, 'primary');
        assert.deepEqual(frozen.result.rows, [{ n: 42 }]);
        assert.ok(took < 1500, `the read took ${took.toFixed(0)} ms (bound 300 ms)`);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      assert.throws(
        () => new ReplicaRouter({ primary, replicas: [], replicaTimeoutMs: 0 }),
        /replicaTimeoutMs/,
      );
    } finally {
      await router.close();
    }
  });

  // Last: it promotes the standby, which then serves nothing more.
  it('a replica stopped, restarted and promoted: reads keep working and are never stale', async () => {
    const router = new ReplicaRouter({ primary, replicas: [replica], maxWaitMs: 50, pollMs: 10 });
    const cycle = async (label: string): Promise<number> => {
      let stale = 0;
      await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const id = 1000 + i;
          const name = `${label}-${i}`;
          const { token } = await router.write((db) =>
            db.query('UPDATE profiles SET name = $1 WHERE id = $2', [name, id]),
          );
          const { result } = await router.read(
            (db) => db.query('SELECT name FROM profiles WHERE id = $1', [id]),
            { token },
          );
          if (result.rows[0]?.name !== name) stale++;
        }),
      );
      return stale;
    };
    assert.equal(await cycle('up'), 0);
    await pair.stopReplica();
    assert.equal(await cycle('stopped'), 0);
    assert.equal(router.replicas[0]?.usable, false);
    await pair.startReplica();
    const usable = (): boolean | undefined => router.replicas[0]?.usable;
    for (let i = 0; i < 500 && usable() !== true; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(router.replicas[0]?.usable, true, 'back in use once it answers');
    assert.equal(await cycle('restarted'), 0);
    await pair.promoteReplica();
    for (let i = 0; i < 500 && usable() !== false; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(router.replicas[0]?.lastError, 'not a standby (promoted?)');
    assert.equal(await cycle('promoted'), 0);
    const { source } = await router.read((db) => db.query('SELECT 1'));
    assert.equal(source, 'primary');
    await router.close();
  });
});
