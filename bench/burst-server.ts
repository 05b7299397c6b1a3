/**
 * The server of `npm run bench:burst`, in its own process: an HTTP/1.1 and
 * an h2c listener sharing one handler that records the moment each request's
 * body is complete (when a handler's logic would start). `POST /_reset`
 * clears the record, `GET /_arrivals` returns it.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';

let arrivals: number[] = [];
const now = (): number => performance.timeOrigin + performance.now();

function handle(
  method: string,
  path: string,
  body: () => Promise<void>,
  respond: (status: number, text: string) => void,
): void {
  void body().then(() => {
    if (path === '/_reset') {
      arrivals = [];
      return respond(200, '{}');
    }
    if (path === '/_arrivals') return respond(200, JSON.stringify(arrivals));
    if (method !== 'GET') arrivals.push(now());
    respond(200, '{"ok":true}');
  });
}

const h1 = http.createServer({ keepAliveTimeout: 120_000 }, (request, response) => {
  handle(
    request.method ?? 'GET',
    request.url ?? '/',
    () =>
      new Promise((resolve) => {
        request.resume();
        request.on('end', resolve);
      }),
    (status, text) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(text);
    },
  );
});
h1.maxRequestsPerSocket = 0;
const h2 = http2.createServer();
h2.on('stream', (stream, headers) => {
  handle(
    String(headers[':method']),
    String(headers[':path']),
    () =>
      new Promise((resolve) => {
        stream.resume();
        stream.on('end', resolve);
      }),
    (status, text) => {
      if (stream.closed) return;
      stream.respond({ ':status': status, 'content-type': 'application/json' });
      stream.end(text);
    },
  );
});
h2.on('sessionError', () => undefined);

h1.listen(0, '127.0.0.1');
h2.listen(0, '127.0.0.1');
await Promise.all([
  new Promise((r) => h1.once('listening', r)),
  new Promise((r) => h2.once('listening', r)),
]);
process.send?.({
  http1: `http://127.0.0.1:${(h1.address() as AddressInfo).port}`,
  http2: `http://127.0.0.1:${(h2.address() as AddressInfo).port}`,
});
