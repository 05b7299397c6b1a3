/**
 * The burst engine's wire safety: no header can split a request (fuzzed with
 * fast-check, then checked against a raw socket server that records the
 * exact bytes), and a server that resets connections mid-burst never
 * leaves an unhandled rejection.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  BurstTransportError,
  Http1BurstClient,
  serializeRequest,
} from '../../packages/cli/src/run/http1.js';

const url = new URL('http://127.0.0.1:1');

/** The header lines of a serialised request, split where a server would split them. */
function headerLines(bytes: Buffer): string[] {
  const text = bytes.toString('latin1');
  const head = text.slice(0, text.indexOf('\r\n\r\n'));
  return head.split(/\r\n|\n|\r/).slice(1);
}

describe('burst requests cannot be split', () => {
  it('fuzzed headers: either refused with a typed error, or exactly one line each on the wire', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 12 }),
        fc.string({ unit: 'binary', maxLength: 24 }),
        (name, value) => {
          let bytes: Buffer;
          try {
            bytes = serializeRequest(url, {
              method: 'POST',
              path: '/x',
              headers: { [name]: value },
            });
          } catch (error) {
            assert.ok(error instanceof BurstTransportError, String(error));
            return;
          }
          // Accepted: the bytes carry host, the header and content-length, each on its own line.
          const lines = headerLines(bytes);
          assert.equal(
            lines.length,
            name.toLowerCase() === 'host' || name.toLowerCase() === 'content-length' ? 2 : 3,
            JSON.stringify(lines),
          );
          assert.ok(
            bytes.every((b) => b < 0x80),
            'ASCII only',
          );
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('the reviewed attack: \\u010D\\u010A in a value is refused, not sent as CR LF', () => {
    assert.throws(
      () =>
        serializeRequest(url, {
          method: 'POST',
          path: '/x',
          headers: { 'x-a': 'v\u010D\u010AGET /admin HTTP/1.1' },
        }),
      (e: unknown) => e instanceof BurstTransportError && /x-a/.test(e.message),
    );
    assert.throws(
      () => serializeRequest(url, { method: 'POST', path: '/x', headers: { 'x a': 'v' } }),
      /not an HTTP token/,
    );
  });

  it('on the wire: a raw server receives exactly the requests sent, one per connection', async () => {
    const received: Buffer[] = [];
    const server = createServer((socket) => {
      let data = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        // Answer each complete request (warm-up and burst) with an empty 200.
        for (;;) {
          const end = data.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = data.subarray(0, end + 4);
          const length = Number(/content-length: (\d+)/i.exec(head.toString('latin1'))?.[1] ?? 0);
          if (data.length < end + 4 + length) return;
          received.push(data.subarray(0, end + 4 + length));
          data = data.subarray(end + 4 + length);
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        }
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const samples = fc.sample(
        fc.record({
          name: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/),
          value: fc.string({ unit: 'grapheme-ascii', maxLength: 20 }),
        }),
        { numRuns: 20, seed: 42 },
      );
      const requests = samples.flatMap(({ name, value }) => {
        const request = { method: 'POST', path: '/fuzz', headers: { [name]: value }, body: 'b' };
        try {
          return [{ request, wire: serializeRequest(new URL(origin), request) }];
        } catch {
          return [];
        }
      });
      assert.ok(requests.length > 5, 'enough accepted samples');
      await using client = await Http1BurstClient.open(origin, { connections: requests.length });
      received.length = 0;
      const result = await client.fire(requests.map((r) => r.request));
      assert.deepEqual(
        result.responses.map((r) => r.status),
        requests.map(() => 200),
      );
      // Byte for byte what was serialised: nothing more, nothing split.
      assert.deepEqual(
        received.map((b) => b.toString('latin1')).sort(),
        requests.map((r) => r.wire.toString('latin1')).sort(),
      );
    } finally {
      server.close();
    }
  });
});

describe('a server that resets connections mid-burst', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  after(() => process.off('unhandledRejection', onUnhandled));

  it('gets typed failures or status 0, never an unhandled rejection', async () => {
    let warmed = 0;
    const sockets: Socket[] = [];
    const server = createServer((socket) => {
      sockets.push(socket);
      socket.once('data', () => {
        // Answer the warm-up; on the burst's first bytes, reset the connection.
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        warmed += 1;
        socket.once('data', () => socket.resetAndDestroy());
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const client = await Http1BurstClient.open(origin, { connections: 20, settleMs: 50 });
      assert.equal(warmed, 20);
      const outcome = await client
        .fire(Array.from({ length: 20 }, () => ({ method: 'POST', path: '/x', body: 'abc' })))
        .then(
          (result) => result.responses.map((r) => r.status),
          (error: unknown) => error,
        );
      if (Array.isArray(outcome))
        assert.ok(
          outcome.every((s) => s === 0),
          String(outcome),
        );
      else assert.ok(outcome instanceof Error, String(outcome));
      client.close();
      // Give late socket errors a turn to surface.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});
