/**
 * Delay injection: `delayPoint` is a no-op unless test mode is on (by option
 * or RACEGUARD_DELAYS, never by default); in test mode the request header
 * sets each request's delays through the Fastify, Express and Hono adapters
 * (a malformed header is a 400); and `raceguard run --delay` turns a race
 * whose window is an `await` that returns at once from (almost) never
 * caught into caught in every trial.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { InvalidArgumentError } from '../../packages/raceguard/src/core/errors.js';
import {
  configureDelays,
  delayPoint,
  parseDelays,
  resetDelays,
  withRequestDelays,
} from '../../packages/raceguard/src/delay/index.js';
import { expressDelays } from '../../packages/raceguard/src/http/index.js';
import { fastifyDelays } from '../../packages/raceguard/src/http/fastify.js';
import { honoDelays } from '../../packages/raceguard/src/http/hono.js';
import { startCouponService } from '../../examples/delay/coupon-service.js';
import { runCli } from '../helpers/cli.js';

/** 'done' if `promise` settles before the next event-loop turn, else 'pending'. */
function settlesAtOnce(promise: Promise<unknown>): Promise<'done' | 'pending'> {
  return Promise.race([
    promise.then(() => 'done' as const),
    new Promise<'pending'>((resolve) => setImmediate(() => resolve('pending'))),
  ]);
}

describe('delayPoint', () => {
  afterEach(() => {
    delete process.env.RACEGUARD_DELAYS;
    resetDelays();
  });

  it('is a no-op by default, even with delays asked for by a request', async () => {
    assert.equal(await settlesAtOnce(delayPoint('after-read')), 'done');
    const inRequest = withRequestDelays('after-read=10000', () => delayPoint('after-read'));
    assert.equal(await settlesAtOnce(inRequest), 'done');
  });

  it('in test mode pauses for the request’s delay, the configured one otherwise, and honours its signal', async () => {
    configureDelays({ enabled: true, delays: { 'before-commit': 10_000 } });
    assert.equal(await settlesAtOnce(delayPoint('after-read')), 'done', 'no delay for this point');
    const controller = new AbortController();
    const configured = delayPoint('before-commit', { signal: controller.signal });
    assert.equal(await settlesAtOnce(configured), 'pending');
    controller.abort(new Error('client went away'));
    await assert.rejects(configured, /client went away|aborted/);
    const perRequest = new AbortController();
    const requested = withRequestDelays('after-read=10000', () =>
      delayPoint('after-read', { signal: perRequest.signal }),
    );
    assert.equal(await settlesAtOnce(requested), 'pending');
    perRequest.abort();
    await assert.rejects(requested);
    // Outside the request's scope its delay does not apply.
    assert.equal(await settlesAtOnce(delayPoint('after-read')), 'done');
  });

  it('RACEGUARD_DELAYS turns test mode on, with fixed delays or header control only', async () => {
    process.env.RACEGUARD_DELAYS = 'on';
    resetDelays();
    assert.equal(await settlesAtOnce(delayPoint('x')), 'done');
    assert.equal(
      await settlesAtOnce(withRequestDelays('x=10000', () => delayPoint('x'))),
      'pending',
    );
    process.env.RACEGUARD_DELAYS = 'x=10000';
    resetDelays();
    const controller = new AbortController();
    const fixed = delayPoint('x', { signal: controller.signal });
    assert.equal(await settlesAtOnce(fixed), 'pending');
    controller.abort();
    await assert.rejects(fixed);
  });

  it('refuses bad delay lists and options, naming the bad part', () => {
    assert.deepEqual(
      [...parseDelays('a=1, b.c=20')],
      [
        ['a', 1],
        ['b.c', 20],
      ],
    );
    for (const bad of ['a', 'a=-1', 'a=1.5', 'a b=1', 'a=99999999']) {
      assert.throws(() => parseDelays(bad), InvalidArgumentError, bad);
    }
    assert.throws(() => configureDelays({ enabled: 'yes' } as never), InvalidArgumentError);
    assert.throws(
      () => configureDelays({ enabled: true, delays: { x: -1 } }),
      InvalidArgumentError,
    );
    assert.throws(
      () => configureDelays({ enabled: true, delay: {} } as never),
      InvalidArgumentError,
    );
  });
});

describe('the HTTP adapters', () => {
  afterEach(() => resetDelays());

  /** A handler that reports how long its delay point paused, in ms. */
  const measure = async (): Promise<{ pausedMs: number }> => {
    const started = performance.now();
    await delayPoint('window');
    return { pausedMs: performance.now() - started };
  };

  const servers: [string, () => Promise<{ url: string; close: () => Promise<void> }>][] = [
    [
      'fastify',
      async () => {
        const app = Fastify();
        await app.register(fastifyDelays());
        app.get('/', measure);
        const url = await app.listen({ host: '127.0.0.1', port: 0 });
        return { url, close: () => app.close() };
      },
    ],
    [
      'express',
      async () => {
        const app = express();
        app.use(expressDelays());
        app.get('/', (_request, response, next) => {
          measure().then((body) => response.json(body), next);
        });
        const server: Server = await new Promise((resolve) => {
          const s = app.listen(0, '127.0.0.1', () => resolve(s));
        });
        return {
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          close: () => new Promise<void>((resolve) => server.close(() => resolve())),
        };
      },
    ],
    [
      'hono',
      async () => {
        const app = new Hono();
        app.use('*', honoDelays());
        app.get('/', async (c) => c.json(await measure()));
        const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
          const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
        });
        return {
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
          close: () => new Promise<void>((resolve) => server.close(() => resolve())),
        };
      },
    ],
  ];

  for (const [name, start] of servers) {
    it(`${name}: the header widens the request's window in test mode only; a malformed one is a 400`, async () => {
      const { url, close } = await start();
      const get = async (header?: string) => {
        const response = await fetch(
          url,
          header === undefined ? {} : { headers: { 'x-raceguard-delay': header } },
        );
        return {
          status: response.status,
          reached: response.headers.get('x-raceguard-delay-reached'),
          body: (await response.json()) as { pausedMs: number; error?: string },
        };
      };
      try {
        configureDelays({ enabled: true });
        const [slow, plain] = await Promise.all([get('window=150'), get()]);
        assert.equal(slow.status, 200);
        assert.ok(slow.body.pausedMs >= 140, `paused ${slow.body.pausedMs} ms`);
        // The response says which of the request's points the handler reached.
        assert.equal(slow.reached, 'window');
        assert.equal(plain.reached, null);
        assert.equal((await get('nowhere=10')).reached, '');
        assert.ok(
          plain.body.pausedMs < 100,
          `a request without the header paused ${plain.body.pausedMs} ms`,
        );
        const bad = await get('window=soon');
        assert.equal(bad.status, 400);
        assert.match(bad.body.error!, /x-raceguard-delay/);
        configureDelays({ enabled: false });
        const ignored = await get('window=150');
        assert.equal(ignored.status, 200);
        assert.ok(
          ignored.body.pausedMs < 100,
          `outside test mode the header paused ${ignored.body.pausedMs} ms`,
        );
        assert.equal(
          (await get('window=soon')).status,
          200,
          'outside test mode the header is not even read',
        );
      } finally {
        await close();
      }
    });
  }
});

describe('raceguard run --delay', () => {
  afterEach(() => resetDelays());

  it('a window no burst can hit is caught in every trial once --delay widens it; malformed --delay is exit 2', async () => {
    configureDelays({ enabled: true });
    const service = await startCouponService();
    try {
      const scenario = 'examples/delay/coupon.scenario.json';
      const plain = await runCli(['run', scenario, '--target', service.url, '--json']);
      const [before] = (
        JSON.parse(plain.stdout) as { scenarios: { violatedTrials: number; trials: unknown[] }[] }
      ).scenarios;
      const widened = await runCli([
        'run',
        scenario,
        '--target',
        service.url,
        '--json',
        '--delay',
        'after-check=30',
      ]);
      assert.equal(widened.status, 1, widened.stderr);
      const [after] = (JSON.parse(widened.stdout) as { scenarios: { violatedTrials: number }[] })
        .scenarios;
      assert.equal(after!.violatedTrials, 20);
      assert.ok(
        before!.violatedTrials < 5,
        `caught in ${before!.violatedTrials}/20 trials without --delay`,
      );
      process.stderr.write(
        `coupon race caught in ${before!.violatedTrials}/20 trials without --delay, 20/20 with\n`,
      );

      // A point no request reaches (misspelt here) is an error, not a clean pass.
      const misspelt = await runCli([
        'run',
        scenario,
        '--target',
        service.url,
        '--delay',
        'after-chek=30',
      ]);
      assert.equal(misspelt.status, 2, misspelt.stdout);
      assert.match(misspelt.stdout, /delay point after-chek reached by no request of the burst/);

      // Control: outside test mode the service ignores the header: the window stays closed.
      configureDelays({ enabled: false });
      const ignored = await runCli([
        'run',
        scenario,
        '--target',
        service.url,
        '--json',
        '--delay',
        'after-check=30',
      ]);
      const [off] = (JSON.parse(ignored.stdout) as { scenarios: { violatedTrials: number }[] })
        .scenarios;
      assert.ok(off!.violatedTrials < 5, `caught in ${off!.violatedTrials}/20 with test mode off`);

      const malformed = await runCli(['run', scenario, '--delay', 'after-check']);
      assert.equal(malformed.status, 2);
      assert.match(malformed.stderr, /point=ms/);
    } finally {
      await service.close();
    }
  });
});
