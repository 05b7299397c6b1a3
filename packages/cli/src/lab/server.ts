/**
 * The lab's HTTP service: every scenario under every strategy, on one
 * `node:http` server over one PostgreSQL or MySQL pool (no framework: the lab adds
 * nothing to what a service that installs raceguard must install).
 */
import { messageOf } from '../arguments.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { sleep } from 'raceguard';
import type { LabPool } from './sql.js';
import {
  ALL_STRATEGIES,
  appliesTo,
  type HandlerContext,
  type ObservedResponse,
  type Scenario,
  type Strategy,
} from './scenario.js';
import { serve } from './strategy.js';

/** Options of {@link createLabServer}. */
export interface LabServerOptions {
  /** The service's pool, on PostgreSQL or MySQL / MariaDB. */
  readonly pool: LabPool;
  readonly scenarios: readonly Scenario[];
  /** The awaited pause between read and write, in ms; 0 = none at all. */
  readonly gapMs: number;
  /** Attempts of every transaction and optimistic update. @default 10 */
  readonly maxAttempts?: number;
  /** This server's lockers, for the lock strategies. @default none */
  readonly lockers?: HandlerContext['lockers'];
  /** MySQL: the `GET_LOCK` locker of the `advisory-lock` strategy. */
  readonly advisoryLock?: HandlerContext['advisoryLock'];
}

/**
 * Build (not start) the lab service. Routes: `GET /` (an index of the
 * routes, scenarios and example bodies), `GET /health`, and
 * `POST /scenarios/:scenario/:strategy` with the scenario's JSON body. Each
 * answer carries `retries`: how many times the strategy re-ran its work.
 *
 * @example
 * ```ts
 * const app = createLabServer({ pool, scenarios: SCENARIOS, gapMs: 2 });
 * await app.listen({ host: '127.0.0.1', port: 0 });
 * ```
 */
export function createLabServer(options: LabServerOptions): LabServer {
  const routes = labRoutes(options);
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const send = ([status, value]: Reply): void => {
        const text = JSON.stringify(value);
        response.writeHead(status, {
          'content-type': 'application/json; charset=utf-8',
          'content-length': Buffer.byteLength(text),
        });
        response.end(text);
      };
      const body = parseBody(chunks);
      if (typeof body === 'string') return send([400, { error: body }]);
      const path = (request.url ?? '/').split('?')[0] ?? '/';
      routes(request.method ?? 'GET', path, body).then(send, (error: unknown) =>
        send([500, { error: messageOf(error) }]),
      );
    });
  });
  // The burst engine keeps one warmed connection per request open between bursts.
  server.keepAliveTimeout = 120_000;
  return {
    server,
    listen: ({ host = '127.0.0.1', port = 0 } = {}) =>
      new Promise<string>((resolve, reject) => {
        const onError = (error: Error): void => reject(error);
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          const address = server.address() as AddressInfo;
          resolve(`http://${address.address}:${address.port}`);
        });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A request's JSON object body (`{}` when empty), or why it is refused. */
function parseBody(chunks: readonly Buffer[]): JsonObject | string {
  if (chunks.length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not an object');
    return parsed as JsonObject;
  } catch (error) {
    return `the body must be a JSON object: ${messageOf(error)}`;
  }
}

/** The lab's routes: a request's method, path and body to its reply. */
function labRoutes(
  options: LabServerOptions,
): (method: string, path: string, body: JsonObject) => Promise<Reply> {
  const byName = new Map(options.scenarios.map((s) => [s.name, s]));
  const index = indexOf(options.scenarios);
  const bench = testBench(options, byName);
  const handle = scenarioHandler(options, byName);
  return async (method, path, body) => {
    const parts = path.split('/').slice(1).map(decodeURIComponent);
    if (method === 'GET' && path === '/') return [200, index];
    if (method === 'GET' && path === '/health') return [200, { ok: true }];
    if (method === 'POST' && parts[0] === 'scenarios' && parts.length === 3)
      return handle(parts[1] ?? '', parts[2] ?? '', body);
    if (method === 'POST' && parts[0] === 'lab' && parts.length === 4 && parts[3] === 'reset')
      return bench.reset(parts[1] ?? '', parts[2] ?? '', body);
    if (method === 'POST' && parts[0] === 'lab' && parts.length === 3 && parts[2] === 'check')
      return bench.check(parts[1] ?? '', body);
    return [404, { error: `no route ${method} ${path}: GET / lists the routes` }];
  };
}

/** What a person (or a scenario file's author) needs to aim at the lab: `GET /`. */
function indexOf(scenarios: readonly Scenario[]) {
  return {
    service: 'raceguard lab',
    routes: [
      { method: 'GET', path: '/', answers: 'this index' },
      { method: 'GET', path: '/health', answers: '{ "ok": true }' },
      {
        method: 'POST',
        path: '/scenarios/:scenario/:strategy',
        body: "the scenario's request body (see exampleBody below)",
        answers:
          '200 done, 409 conflict, 422 refused by a business rule, 500 failure; { ..., "retries": n }',
      },
      {
        method: 'POST',
        path: '/lab/:scenario/:strategy/reset',
        body: { concurrency: 'integer >= 1' },
        answers:
          '{ "requests": [...] }: recreates the scenario\'s tables for that strategy, seeds them, and returns the burst\'s request bodies',
      },
      {
        method: 'POST',
        path: '/lab/:scenario/check',
        body: { concurrency: 'integer', responses: '[{ "status", "body", "request" }]' },
        answers: '{ "anomalies": { "<kind>": count } }: the invariants read from the database',
      },
    ],
    scenarios: scenarios.map((scenario) => ({
      name: scenario.name,
      title: scenario.title,
      invariant: scenario.invariant,
      strategies: ALL_STRATEGIES.filter((strategy) => appliesTo(scenario, strategy)),
      path: `/scenarios/${scenario.name}/:strategy`,
      exampleBody: scenario.requests({ concurrency: 2 })[0],
      tables: `${scenario.name}_*`,
    })),
  };
}

/**
 * The test-bench routes for scenario files (`labScenarios`): reset a
 * scenario for a strategy and get the burst's request bodies; check its
 * invariants.
 */
function testBench(options: LabServerOptions, byName: ReadonlyMap<string, Scenario>) {
  const schemaFor = new Map<string, Strategy>();
  return {
    reset: async (name: string, strategy: string, body: JsonObject): Promise<Reply> => {
      const scenario = byName.get(name);
      const concurrency = Number(body.concurrency);
      if (scenario === undefined || !isStrategy(strategy)) {
        return [404, { error: 'unknown scenario or strategy' }];
      }
      if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
        return [400, { error: 'concurrency must be a positive integer' }];
      }
      if (schemaFor.get(scenario.name) !== strategy) {
        await scenario.createSchema(options.pool, strategy);
        schemaFor.set(scenario.name, strategy);
      }
      await scenario.seed(options.pool, { concurrency });
      return [200, { requests: scenario.requests({ concurrency }) }];
    },
    check: async (name: string, body: JsonObject): Promise<Reply> => {
      const scenario = byName.get(name);
      const concurrency = Number(body.concurrency);
      const responses = body.responses;
      if (scenario === undefined) return [404, { error: 'unknown scenario' }];
      if (!Number.isSafeInteger(concurrency) || !Array.isArray(responses)) {
        return [400, { error: 'expected { concurrency, responses }' }];
      }
      const anomalies = await scenario.check(options.pool, responses as ObservedResponse[], {
        concurrency,
      });
      return [200, { anomalies }];
    },
  };
}

/** `POST /scenarios/:scenario/:strategy`: the scenario's request served under the strategy, with its retries counted. */
function scenarioHandler(options: LabServerOptions, byName: ReadonlyMap<string, Scenario>) {
  const gap = options.gapMs > 0 ? () => sleep(options.gapMs) : () => Promise.resolve();
  return async (name: string, strategy: string, body: JsonObject): Promise<Reply> => {
    const scenario = byName.get(name);
    if (scenario === undefined || !isStrategy(strategy)) {
      return [404, { error: 'unknown scenario or strategy' }];
    }
    let retries = 0;
    const context: HandlerContext = {
      pool: options.pool,
      gap,
      lockers: options.lockers ?? {},
      ...(options.advisoryLock !== undefined && { advisoryLock: options.advisoryLock }),
      retryOptions: {
        maxAttempts: options.maxAttempts ?? 10,
        maxDelayMs: 100,
        onRetry: () => {
          retries++;
        },
      },
    };
    try {
      const result = await serve(scenario, strategy, body, context);
      return [result.status, { ...result.body, retries }];
    } catch (error) {
      return [500, { error: error instanceof Error ? error.message : String(error), retries }];
    }
  };
}

type JsonObject = Record<string, unknown>;
/** Status and JSON body. */
type Reply = readonly [number, unknown];

const isStrategy = (value: string): value is Strategy =>
  (ALL_STRATEGIES as readonly string[]).includes(value);

/** The lab service, built by {@link createLabServer}. */
export interface LabServer {
  /** The underlying `node:http` server. */
  readonly server: Server;
  /** Listen on a loopback address; resolves with the base URL. */
  listen(options?: { readonly host?: string; readonly port?: number }): Promise<string>;
  /** Stop listening and close every connection (the burst engine keeps them open). */
  close(): Promise<void>;
}
