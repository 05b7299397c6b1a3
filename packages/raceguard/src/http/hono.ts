/** Idempotency keys for Hono. */
import type { Context, MiddlewareHandler } from 'hono';
import { createPolicy, decide, finish, type HttpIdempotencyOptions } from './policy.js';

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
