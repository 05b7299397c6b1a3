import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ResponseReader } from '../../packages/cli/src/run/http1-parser.js';
import { burst } from '../../packages/cli/src/run/burst.js';
import { raceWindow } from '../../packages/raceguard/src/run/race-window.js';
import {
  BurstTransportError,
  Http1BurstClient,
  serializeRequest,
} from '../../packages/cli/src/run/http1.js';

describe('ResponseReader', () => {
  it('reads content-length, chunked and bodiless responses, split at any byte', () => {
    const wire = Buffer.from(
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello' +
        'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n' +
        'HTTP/1.1 204 No Content\r\n\r\n',
    );
    for (const step of [1, 7, wire.length]) {
      const reader = new ResponseReader();
      const out = [];
      for (let i = 0; i < wire.length; i += step)
        out.push(...reader.push(wire.subarray(i, i + step)));
      assert.deepEqual(
        out.map((r) => [r.status, r.body.toString()]),
        [
          [200, 'hello'],
          [201, 'abcde'],
          [204, ''],
        ],
        `step ${step}`,
      );
      assert.equal(out[0]?.headers['x-a'], '1, 2');
    }
  });

  it('refuses a malformed status line', () => {
    assert.throws(
      () => new ResponseReader().push(Buffer.from('HTTP/2 200\r\n\r\n')),
      /malformed status line/,
    );
  });

  it('serialises requests with content-length and refuses header injection', () => {
    const url = new URL('http://127.0.0.1:8080');
    const text = serializeRequest(url, {
      method: 'POST',
      path: '/buy',
      body: '{"a":1}',
      headers: { 'X-Id': '7' },
    }).toString();
    assert.equal(
      text,
      'POST /buy HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nx-id: 7\r\ncontent-length: 7\r\n\r\n{"a":1}',
    );
    assert.throws(
      () => serializeRequest(url, { method: 'GET', path: '/', headers: { x: 'a\r\nb: c' } }),
      /not visible ASCII/,
    );
    assert.throws(() => serializeRequest(url, { method: 'GET', path: '/a b' }), /visible ASCII/);
    assert.throws(
      () => serializeRequest(url, { method: 'GET', path: '/\r\nx: y' }),
      /visible ASCII/,
    );
    assert.throws(() => serializeRequest(url, { method: 'G T', path: '/' }), /not an HTTP token/);
  });
});

describe('Http1BurstClient (last-byte synchronisation)', () => {
  let server: http.Server;
  let origin: string;
  const arrivals: number[] = [];
  const partialSeen: number[] = [];
  before(async () => {
    server = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString();
        partialSeen.push(body.length);
      });
      request.on('end', () => {
        arrivals.push(performance.now());
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ path: request.url, body }));
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  it('holds every request one byte short, then releases them all together', async () => {
    await using client = await Http1BurstClient.open(origin, { connections: 100, settleMs: 30 });
    arrivals.length = 0;
    partialSeen.length = 0;
    const requests = Array.from({ length: 100 }, (_, i) => ({
      method: 'POST',
      path: `/r/${i}`,
      body: JSON.stringify({ i }),
    }));
    const result = await client.fire(requests);
    assert.equal(result.responses.length, 100);
    for (const r of result.responses) {
      assert.equal(r.status, 200);
      assert.deepEqual(JSON.parse(r.text), {
        path: `/r/${r.index}`,
        body: JSON.stringify({ i: r.index }),
      });
    }
    // The server saw partial bodies (one byte short) before the release.
    assert.ok(partialSeen.some((n) => n === JSON.stringify({ i: 50 }).length - 1));
    assert.ok(result.sendSpreadMs < 50, `release took ${result.sendSpreadMs} ms`);
    // Reusable: a second burst on the same connections.
    const again = await client.fire(requests.slice(0, 30));
    assert.equal(again.responses.filter((r) => r.status === 200).length, 30);
  });

  it('reopens connections the server closed between bursts (keep-alive timeout, Connection: close)', async () => {
    const short = http.createServer({ keepAliveTimeout: 50 }, (request, response) => {
      request.resume();
      request.on('end', () => {
        if (request.url === '/close') response.setHeader('connection', 'close');
        response.end('ok');
      });
    });
    short.listen(0, '127.0.0.1');
    await once(short, 'listening');
    try {
      const target = `http://127.0.0.1:${(short.address() as AddressInfo).port}`;
      await using client = await Http1BurstClient.open(target, { connections: 10 });
      for (let round = 0; round < 3; round += 1) {
        const result = await client.fire(
          Array.from({ length: 10 }, () => ({ method: 'POST', path: '/close', body: 'x' })),
        );
        assert.equal(result.responses.filter((r) => r.status === 200).length, 10, `round ${round}`);
        await new Promise((r) => setTimeout(r, 120)); // longer than the keep-alive timeout
      }
    } finally {
      short.close();
    }
  });

  it('refuses a burst larger than its connections, and reports an unreachable target', async () => {
    await using client = await Http1BurstClient.open(origin, { connections: 2 });
    await assert.rejects(
      client.fire(Array.from({ length: 3 }, () => ({ method: 'GET', path: '/' }))),
      /needs as many connections/,
    );
    await assert.rejects(
      Http1BurstClient.open('http://127.0.0.1:1', { connections: 1 }),
      /could not connect/,
    );
  });
});

describe('burst() and raceWindow()', () => {
  it('burst() fires once over fresh connections and closes them', async () => {
    const server = http.createServer((request, response) => {
      request.resume();
      request.on('end', () => response.end(request.url));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const result = await burst(
        origin,
        Array.from({ length: 20 }, (_, i) => ({ method: 'POST', path: `/${i}`, body: 'x' })),
      );
      assert.deepEqual(
        result.responses.map((r) => r.text),
        Array.from({ length: 20 }, (_, i) => `/${i}`),
      );
      await assert.rejects(burst(origin, []), /non-empty array/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('regression: malformed responses followed by a close, and an early answer to a large body, are typed errors of their request (never an uncaught exception)', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    const sockets = new Set<net.Socket>();
    let reply = '';
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
      let warmed = false;
      socket.on('data', () => {
        if (!warmed) {
          // The warm-up GET is answered properly; the burst's request is not.
          warmed = true;
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        } else if (reply !== '') socket.end(reply);
        else {
          socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n');
          socket.resetAndDestroy();
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      for (const malformed of [
        'HTTP/1.1 abc\r\n\r\n',
        'garbage\r\n\r\n',
        'HTTP/1.1 99999 X\r\n\r\n',
        'HTTP/1.1 200 OK\r\ncontent-length: abc\r\n\r\n',
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
      ]) {
        reply = malformed;
        const { responses } = await burst(origin, [{ method: 'GET', path: '/' }]);
        assert.equal(responses[0]?.status, 0, JSON.stringify(malformed));
        assert.match(String(responses[0]?.error), /malformed/);
      }
      reply = '';
      // The early answer may be read before the reset lands: either way, nothing untyped.
      for (let i = 0; i < 5; i++) {
        const outcome = await burst(origin, [
          { method: 'POST', path: '/', body: new Uint8Array(8 * 1024 * 1024) },
        ]).then(
          (result) => result.responses[0]?.status ?? result.responses[0]?.error,
          (error: unknown) => error,
        );
        assert.ok(
          outcome === 413 || outcome === 0 || outcome instanceof BurstTransportError,
          String(outcome),
        );
      }
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(uncaught, []);
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });

  it('raceWindow() sleeps only when asked', async () => {
    const t = performance.now();
    await raceWindow(0);
    assert.ok(performance.now() - t < 5);
    await raceWindow(30);
    assert.ok(performance.now() - t >= 25);
  });
});

describe('Http1BurstClient pipelined (the HTTP/1.1 single-packet release)', () => {
  /** A race window of one event-loop turn: read the stock, setImmediate, write it back. */
  let stock = 1;
  let orders = 0;
  let server: http.Server;
  let origin: string;
  before(async () => {
    server = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        if (request.method !== 'POST') return void response.end('{}');
        const seen = stock;
        setImmediate(() => {
          if (seen > 0) {
            stock = seen - 1;
            orders += 1;
          }
          response.setHeader('content-type', 'application/json');
          response.end(JSON.stringify({ echo: JSON.parse(body) as unknown, took: seen > 0 }));
        });
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const requests = (n: number) =>
    Array.from({ length: n }, (_, i) => ({
      method: 'POST',
      path: '/take',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ i }),
    }));

  it('exposes a one-turn race in every burst, each response matched to its request', async () => {
    await using client = await Http1BurstClient.open(origin, { connections: 1 });
    let exposed = 0;
    for (let b = 0; b < 20; b++) {
      stock = 1;
      orders = 0;
      const { responses } = await client.fire(requests(10), { pipeline: true });
      assert.deepEqual(
        responses.map((r) => (JSON.parse(r.text) as { echo: { i: number } }).echo.i),
        Array.from({ length: 10 }, (_, i) => i),
      );
      assert.deepEqual(
        responses.map((r) => r.index),
        Array.from({ length: 10 }, (_, i) => i),
      );
      if (orders > 1) exposed += 1;
    }
    assert.equal(exposed, 20);
  });

  it('control: the same race seen by requests one after another is never exposed', async () => {
    await using client = await Http1BurstClient.open(origin, { connections: 1 });
    stock = 1;
    orders = 0;
    for (const request of requests(10)) await client.fire([request]);
    assert.equal(orders, 1);
  });
});
