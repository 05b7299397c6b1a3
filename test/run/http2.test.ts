/**
 * HTTP/2 bursts against purpose-built h2c and TLS servers whose /buy
 * endpoint reads stock from PostgreSQL and writes it back (unsafe) or
 * decrements it in one statement (fixed): the race is found at gap 0 and
 * the fix shows no false positive.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Http2BurstClient } from '../../packages/cli/src/run/http2.js';
import { atMostWinners, neverNegative } from '../../packages/raceguard/src/run/invariants.js';
import { runScenario } from '../../packages/cli/src/run/run-scenario.js';
import { defineScenario } from '../../packages/raceguard/src/run/scenario.js';
import { openTestDatabase, type TestDatabase } from '../helpers/database.js';

describe('HTTP/2 bursts', () => {
  let db: TestDatabase;
  let dir: string;
  const servers: (http2.Http2Server | http2.Http2SecureServer)[] = [];

  function handler(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.resume();
    stream.on('end', () => {
      const path = String(headers[':path']);
      const respond = (status: number, body: unknown): void => {
        if (stream.closed) return;
        stream.respond({ ':status': status, 'content-type': 'application/json' });
        stream.end(JSON.stringify(body));
      };
      if (path === '/' || path === '/health') return respond(200, { ok: true });
      const work =
        path === '/buy/unsafe'
          ? (async () => {
              const { rows } = await db.pool.query('SELECT stock FROM h2_stock WHERE id = 1');
              const stock = Number(rows[0]?.stock);
              if (stock < 1) return respond(409, { error: 'sold-out' });
              await db.pool.query('UPDATE h2_stock SET stock = $1 WHERE id = 1', [stock - 1]);
              respond(200, { purchased: true });
            })()
          : (async () => {
              const { rowCount } = await db.pool.query(
                'UPDATE h2_stock SET stock = stock - 1 WHERE id = 1 AND stock >= 1',
              );
              respond(rowCount === 1 ? 200 : 409, { purchased: rowCount === 1 });
            })();
      work.catch((error: unknown) => respond(500, { error: String(error) }));
    });
  }

  async function listen(
    server: http2.Http2Server | http2.Http2SecureServer,
    scheme: string,
  ): Promise<string> {
    server.on('stream', handler);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    servers.push(server);
    return `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const scenario = (target: string, path: string, count: number) =>
    defineScenario({
      name: `h2 ${path}`,
      target,
      insecure: true,
      trials: 8,
      setup: async () => {
        await db.pool.query('UPDATE h2_stock SET stock = 1 WHERE id = 1');
      },
      burst: { count, protocol: 'http2', request: (i) => ({ path, json: { buyer: i } }) },
      check: async ({ responses }) => {
        const { rows } = await db.pool.query('SELECT stock FROM h2_stock WHERE id = 1');
        return [
          atMostWinners(responses, 1, (r) => r.status === 200),
          neverNegative(Number(rows[0]?.stock), 'stock'),
        ];
      },
    });

  let h2c: string;
  let h2tls: string;
  before(async () => {
    db = await openTestDatabase(40);
    await db.pool.query(
      'CREATE TABLE h2_stock (id int PRIMARY KEY, stock int NOT NULL); INSERT INTO h2_stock VALUES (1, 1)',
    );
    dir = await mkdtemp(join(tmpdir(), 'raceguard-h2-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    h2c = await listen(http2.createServer(), 'http');
    h2tls = await listen(
      http2.createSecureServer({
        key: await readFile(join(dir, 'key.pem')),
        cert: await readFile(join(dir, 'cert.pem')),
      }),
      'https',
    );
  });
  after(async () => {
    for (const s of servers) s.close();
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('h2c: the unsafe endpoint oversells at gap 0; the fix never does', async () => {
    const unsafe = await runScenario(scenario(h2c, '/buy/unsafe', 50));
    assert.equal(unsafe.erroredTrials, 0, JSON.stringify(unsafe.trialReports.find((t) => t.error)));
    assert.ok(unsafe.violatedTrials > 0, JSON.stringify(unsafe.invariants));
    const fixed = await runScenario(scenario(h2c, '/buy/fixed', 50));
    assert.equal(fixed.erroredTrials, 0);
    assert.equal(fixed.violatedTrials, 0, JSON.stringify(fixed.invariants));
  });

  it('TLS (ALPN h2) with more than 100 streams: the race is found, the fix is clean', async () => {
    const unsafe = await runScenario(scenario(h2tls, '/buy/unsafe', 150));
    assert.equal(unsafe.erroredTrials, 0, JSON.stringify(unsafe.trialReports.find((t) => t.error)));
    assert.ok(unsafe.violatedTrials > 0, JSON.stringify(unsafe.invariants));
    const fixed = await runScenario(scenario(h2tls, '/buy/fixed', 150));
    assert.equal(fixed.violatedTrials, 0, JSON.stringify(fixed.invariants));
    assert.equal(fixed.statuses['200'], fixed.trials);
  });

  it('spreads a burst over several connections when the server caps concurrent streams', async () => {
    const capped = http2.createServer({ settings: { maxConcurrentStreams: 40 } });
    const origin = await listen(capped, 'http');
    await using client = await Http2BurstClient.open(origin, { streams: 100 });
    assert.equal(client.streamsPerConnection, 40);
    const result = await client.fire(
      Array.from({ length: 100 }, () => ({ method: 'GET', path: '/health' })),
    );
    assert.equal(result.responses.filter((r) => r.status === 200).length, 100);
  });

  it('reopens a connection the server closed between bursts', async () => {
    const idle = http2.createServer();
    const serverSessions: http2.ServerHttp2Session[] = [];
    idle.on('session', (session) => serverSessions.push(session));
    const origin = await listen(idle, 'http');
    await using client = await Http2BurstClient.open(origin, { streams: 10 });
    const first = await client.fire(
      Array.from({ length: 10 }, () => ({ method: 'GET', path: '/health' })),
    );
    assert.equal(first.responses.filter((r) => r.status === 200).length, 10);
    // The server ends every session (GOAWAY), as an idle timeout would.
    for (const session of serverSessions) session.close();
    await new Promise((r) => setTimeout(r, 100));
    const second = await client.fire(
      Array.from({ length: 10 }, () => ({ method: 'GET', path: '/health' })),
    );
    assert.equal(second.responses.filter((r) => r.status === 200).length, 10);
  });

  it('refuses an untrusted certificate unless insecure is set', async () => {
    await assert.rejects(Http2BurstClient.open(h2tls, { streams: 1 }), /self-signed|certificate/i);
  });
});
