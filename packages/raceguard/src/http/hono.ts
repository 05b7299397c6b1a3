/**
 * `raceguard/http/hono`: raceguard's HTTP features as Hono middlewares
 * (idempotency keys, the hybrid logical clock, replica sessions, test-mode
 * delays). Only this entry point's types refer to Hono's, so an app on
 * another framework needs no Hono installed.
 *
 * @packageDocumentation
 */
import type { Context, MiddlewareHandler } from 'hono';
import { createPolicy, decide, finish, type HttpIdempotencyOptions } from './policy.js';
import { formatHlc, type HybridLogicalClock } from '../clock/hlc.js';
import { assertClock, headerOf, receive, type HttpClockOptions } from './clock.js';
import type { ReplicaRouter } from '../postgres/replica-router.js';
import * as replicaSession from './replica-session.js';
import * as delay from '../delay/delay-point.js';
import { requestDelays } from './delays.js';

/** Options of {@link honoIdempotency}. */
export type HonoIdempotencyOptions = HttpIdempotencyOptions<Context>;

async function readBody(c: Context): Promise<unknown> {
  if (c.req.raw.body === null) return undefined;
  const type = c.req.header('content-type') ?? '';
  if (/^application\/([\w.+-]+\+)?json/i.test(type)) {
    // Hono caches the parsed body: the handler's own c.req.json() still works.
    try {
      return (await c.req.json()) as unknown;
    } catch {
      return await c.req.text();
    }
  }
  return new Uint8Array(await c.req.arrayBuffer());
}

/**
 * A Hono middleware that makes the guarded routes (POST and PATCH by
 * default) idempotent per the IETF draft.
 *
 * @example
 * ```ts
 * app.use('/payments/*', honoIdempotency({ store, scope: (c) => c.get('userId') }));
 * ```
 */
export function honoIdempotency(options: HonoIdempotencyOptions): MiddlewareHandler {
  const policy = createPolicy(options);
  return async (c, next) => {
    const guarded = policy.methods.has(c.req.method.toUpperCase());
    const url = new URL(c.req.url);
    const decision = await decide<Context>(policy, {
      request: c,
      method: c.req.method,
      url: url.pathname + url.search,
      headerValue: c.req.header(policy.header),
      body: guarded ? await readBody(c) : undefined,
    });
    if (decision.kind === 'pass') return next();
    if (decision.kind === 'respond') {
      const { status, headers, body } = decision.response;
      return new Response(typeof body === 'string' ? body : new Uint8Array(body), {
        status,
        headers,
      });
    }
    const { execution } = decision;
    try {
      await next();
    } catch (error) {
      await execution.abandon().catch(() => undefined);
      throw error;
    }
    const response = c.res;
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => {
      headers[name] = value;
    });
    const body = new Uint8Array(await response.clone().arrayBuffer());
    const error = await finish(policy, execution, { status: response.status, headers, body });
    if (error !== undefined) options.onError?.(error, c);
    return undefined;
  };
}

/**
 * A Hono middleware.
 *
 * @example
 * ```ts
 * app.use('*', honoClock(clock));
 * ```
 */
export function honoClock(
  clock: HybridLogicalClock,
  options: HttpClockOptions = {},
): MiddlewareHandler {
  assertClock(clock);
  const header = headerOf(options);
  return async (c, next) => {
    const refused = receive(clock, c.req.header(header));
    if (refused !== undefined) return c.json(refused, 400);
    await next();
    c.res.headers.set(header, formatHlc(clock.now()));
    return undefined;
  };
}

/**
 * Hono: `replicaSessionOf(c)` in the handlers (the context is the key).
 *
 * @example
 * ```ts
 * app.use('*', honoReplicaSession(router));
 * ```
 */
export function honoReplicaSession(
  router: ReplicaRouter,
  options: replicaSession.ReplicaSessionOptions = {},
): MiddlewareHandler {
  const settings = replicaSession.settingsOf(router, options);
  return async (c: Context, next) => {
    const token = replicaSession.tokenIn(settings, (name) => c.req.header(name));
    const session = router.session(token);
    replicaSession.attachSession(c, session);
    await next();
    const out = replicaSession.tokenOut(settings, session, token);
    if (out !== undefined) c.res.headers.append(out[0], out[1]);
  };
}

/**
 * Hono: in test mode, a request's `x-raceguard-delay` header sets the
 * delays of the `delayPoint`s its handler passes, and the response's
 * `x-raceguard-delay-reached` header lists those it reached; a malformed
 * header gets a 400. Outside test mode the header is ignored.
 *
 * @example
 * ```ts
 * app.use('*', honoDelays());
 * ```
 */
export function honoDelays(): MiddlewareHandler {
  return async (c: Context, next) => {
    const { scope, refusal } = requestDelays(c.req.header(delay.DELAY_HEADER));
    if (refusal !== undefined) return c.json({ error: refusal }, 400);
    if (scope === undefined) {
      await next();
      return undefined;
    }
    const opened = scope;
    await delay.runInDelayScope(opened, () => next());
    c.res.headers.set(delay.DELAY_REACHED_HEADER, delay.reachedValue(opened));
    return undefined;
  };
}
