/**
 * A small HTTP API that raceguard has never seen, for tests of
 * `raceguard run` from the user's side: in-memory stock and balances, each
 * endpoint with a racy and a correct twin.
 */
import http from 'node:http';

/** The API under test. Its racy handlers await between read and write, as real handlers do. */
export function startShop() {
  const state = { stock: 1, orders: [] as string[], holder: '', a: 100, b: 0, requests: 0 };
  const pause = () => new Promise((resolve) => setTimeout(resolve, 2));
  const server = http.createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      void (async () => {
        state.requests += 1;
        const body = (text === '' ? {} : JSON.parse(text)) as Record<string, unknown>;
        const send = (status: number, value: unknown) => {
          response.writeHead(status, {
            'content-type': 'application/json',
            'x-arrived': String(performance.timeOrigin + performance.now()),
          });
          response.end(JSON.stringify(value));
        };
        const route = `${request.method} ${request.url}`;
        if (route === 'GET /state') return send(200, { ...state, total: state.a + state.b });
        if (route === 'POST /state') return send(405, { error: 'read with GET' });
        if (route === 'GET /broken-state') return send(200, { stock: 'n/a' });
        if (route === 'POST /reset') {
          Object.assign(state, {
            stock: Number(body.stock ?? 1),
            orders: [],
            holder: '',
            a: 100,
            b: 0,
          });
          return send(200, state);
        }
        if (route === 'POST /buy/unsafe') {
          const stock = state.stock;
          if (stock < 1) return send(409, { error: 'sold out' });
          await pause();
          state.stock = stock - 1;
          state.orders.push(String(body.buyer));
          state.holder = String(body.buyer);
          return send(201, { bought: true });
        }
        if (route === 'POST /buy/safe') {
          if (state.stock < 1) return send(409, { error: 'sold out' });
          state.stock -= 1;
          state.orders.push(String(body.buyer));
          state.holder = String(body.buyer);
          return send(201, { bought: true });
        }
        if (route === 'POST /transfer/unsafe') {
          // The debit is a read-modify-write, the credit an increment: concurrent transfers create money.
          const a = state.a;
          await pause();
          state.a = a - 10;
          state.b += 10;
          return send(200, { moved: 10 });
        }
        if (route === 'POST /transfer/safe') {
          state.a -= 10;
          state.b += 10;
          return send(200, { moved: 10 });
        }
        return send(404, { error: `no route ${route}` });
      })();
    });
  });
  return { server, state };
}
