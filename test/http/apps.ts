/**
 * The same payment endpoint on Fastify, Express and Hono, each behind its
 * idempotency adapter, served on a free loopback port.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { expressIdempotency } from '../../packages/raceguard/src/http/express.js';
import { fastifyIdempotency } from '../../packages/raceguard/src/http/fastify.js';
import { honoIdempotency } from '../../packages/raceguard/src/http/hono.js';
import type { HttpIdempotencyOptions } from '../../packages/raceguard/src/http/policy.js';

export type Framework = 'fastify' | 'express' | 'hono';
export const FRAMEWORKS: readonly Framework[] = ['fastify', 'express', 'hono'];

export type AdapterOptions = Omit<
  HttpIdempotencyOptions<unknown>,
  'scope' | 'fingerprint' | 'onError'
>;

export interface PaymentApp {
  readonly url: string;
  /** Charges made per tenant (handler runs that reached the effect). */
  readonly charges: Map<string, number>;
  close(): Promise<void>;
}

interface Payment {
  amount?: number;
  fail?: boolean;
}

/** Runs the handler: 30 ms of "provider" time, then one charge; `fail` answers 500. */
async function charge(
  charges: Map<string, number>,
  tenant: string,
  body: Payment,
): Promise<{ status: number; json: unknown }> {
  await delay(30);
  if (body.fail === true) return { status: 500, json: { error: 'provider failed' } };
  const n = (charges.get(tenant) ?? 0) + 1;
  charges.set(tenant, n);
  return { status: 201, json: { tenant, amount: body.amount, charge: n } };
}

export async function startPaymentApp(
  framework: Framework,
  options: AdapterOptions,
): Promise<PaymentApp> {
  const charges = new Map<string, number>();
  const tenantOf = (value: string | string[] | undefined): string =>
    typeof value === 'string' ? value : 'anonymous';
  if (framework === 'fastify') {
    const app = Fastify();
    await app.register(
      fastifyIdempotency({ ...options, scope: (request) => tenantOf(request.headers['x-tenant']) }),
    );
    app.post('/payments', async (request, reply) => {
      const result = await charge(
        charges,
        tenantOf(request.headers['x-tenant']),
        request.body as Payment,
      );
      reply.header('location', '/payments/1').header('set-cookie', 'session=secret');
      return reply.code(result.status).send(result.json);
    });
    app.get('/payments', () => ({ list: true }));
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    return { url, charges, close: () => app.close() };
  }
  if (framework === 'express') {
    const app = express();
    app.use(express.json());
    app.use(
      expressIdempotency({ ...options, scope: (request) => tenantOf(request.headers['x-tenant']) }),
    );
    app.post('/payments', (request, response, next) => {
      charge(charges, tenantOf(request.headers['x-tenant']), request.body as Payment).then(
        (result) => {
          response.setHeader('location', '/payments/1');
          response.setHeader('set-cookie', 'session=secret');
          response.status(result.status).json(result.json);
        },
        next,
      );
    });
    app.get('/payments', (_request, response) => {
      response.json({ list: true });
    });
    const server = createServer(app);
    return listen(server, charges);
  }
  const app = new Hono();
  app.use('*', honoIdempotency({ ...options, scope: (c) => tenantOf(c.req.header('x-tenant')) }));
  app.post('/payments', async (c) => {
    const result = await charge(
      charges,
      tenantOf(c.req.header('x-tenant')),
      await c.req.json<Payment>(),
    );
    c.header('location', '/payments/1');
    c.header('set-cookie', 'session=secret');
    return c.json(result.json, result.status as 201 | 500);
  });
  app.get('/payments', (c) => c.json({ list: true }));
  const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }) as Server;
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    charges,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function listen(server: Server, charges: Map<string, number>): Promise<PaymentApp> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    charges,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
