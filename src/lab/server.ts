/**
 * The lab's HTTP service: every scenario under every strategy, on one
 * Fastify server over one PostgreSQL pool.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { sleep } from '../index.js';
import type { PoolLike } from '../postgres/index.js';
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
  readonly pool: PoolLike;
  readonly scenarios: readonly Scenario[];
  /** The awaited pause between read and write, in ms; 0 = none at all. */
  readonly gapMs: number;
  /** Attempts of every transaction and optimistic update. @default 10 */
  readonly maxAttempts?: number;
  /** This server's lockers, for the lock strategies. @default none */
  readonly lockers?: HandlerContext['lockers'];
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
export function createLabServer(options: LabServerOptions): FastifyInstance {
  const app = Fastify({ logger: false, keepAliveTimeout: 120_000 });
  const byName = new Map(options.scenarios.map((s) => [s.name, s]));
  const gap = options.gapMs > 0 ? () => sleep(options.gapMs) : () => Promise.resolve();

  app.get('/health', () => ({ ok: true }));

  // What a person (or a scenario file's author) needs to aim at the lab.
  const index = {
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
    scenarios: options.scenarios.map((scenario) => ({
      name: scenario.name,
      title: scenario.title,
      invariant: scenario.invariant,
      strategies: ALL_STRATEGIES.filter((strategy) => appliesTo(scenario, strategy)),
      path: `/scenarios/${scenario.name}/:strategy`,
      exampleBody: scenario.requests({ concurrency: 2 })[0],
      tables: `${scenario.name}_*`,
    })),
  };
  app.get('/', () => index);

  // Test-bench routes for scenario files (`labScenarios`): reset a scenario
  // for a strategy and get the burst's request bodies; check its invariants.
  const schemaFor = new Map<string, Strategy>();
  app.post<{ Params: { scenario: string; strategy: string }; Body: { concurrency?: unknown } }>(
    '/lab/:scenario/:strategy/reset',
    async (request, reply) => {
      const scenario = byName.get(request.params.scenario);
      const strategy = request.params.strategy as Strategy;
      const concurrency = Number(request.body?.concurrency);
      if (scenario === undefined || !ALL_STRATEGIES.includes(strategy)) {
        return reply.code(404).send({ error: 'unknown scenario or strategy' });
      }
      if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
        return reply.code(400).send({ error: 'concurrency must be a positive integer' });
      }
      if (schemaFor.get(scenario.name) !== strategy) {
        await scenario.createSchema(options.pool, strategy);
        schemaFor.set(scenario.name, strategy);
      }
      await scenario.seed(options.pool, { concurrency });
      return { requests: scenario.requests({ concurrency }) };
    },
  );
  app.post<{
    Params: { scenario: string };
    Body: { concurrency?: unknown; responses?: ObservedResponse[] };
  }>('/lab/:scenario/check', async (request, reply) => {
    const scenario = byName.get(request.params.scenario);
    const concurrency = Number(request.body?.concurrency);
    const responses = request.body?.responses;
    if (scenario === undefined) return reply.code(404).send({ error: 'unknown scenario' });
    if (!Number.isSafeInteger(concurrency) || !Array.isArray(responses)) {
      return reply.code(400).send({ error: 'expected { concurrency, responses }' });
    }
    return { anomalies: await scenario.check(options.pool, responses, { concurrency }) };
  });
  app.post<{ Params: { scenario: string; strategy: string }; Body: Record<string, unknown> }>(
    '/scenarios/:scenario/:strategy',
    async (request, reply) => {
      const scenario = byName.get(request.params.scenario);
      const strategy = request.params.strategy as Strategy;
      if (scenario === undefined || !ALL_STRATEGIES.includes(strategy)) {
        return reply.code(404).send({ error: 'unknown scenario or strategy' });
      }
      let retries = 0;
      const context: HandlerContext = {
        pool: options.pool,
        gap,
        lockers: options.lockers ?? {},
        retryOptions: {
          maxAttempts: options.maxAttempts ?? 10,
          maxDelayMs: 100,
          onRetry: () => {
            retries++;
          },
        },
      };
      try {
        const result = await serve(scenario, strategy, request.body, context);
        return await reply.code(result.status).send({ ...result.body, retries });
      } catch (error) {
        return reply
          .code(500)
          .send({ error: error instanceof Error ? error.message : String(error), retries });
      }
    },
  );
  return app;
}
