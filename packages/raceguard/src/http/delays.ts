import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { Context, MiddlewareHandler } from 'hono';
import { InvalidArgumentError } from '../core/errors.js';
import { DELAY_HEADER, delaysEnabled, withRequestDelays } from '../delay/delay-point.js';
import { unencapsulated } from './hooks.js';

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

function badHeader(error: unknown): string {
  return error instanceof InvalidArgumentError ? error.message : `invalid ${DELAY_HEADER} header`;
}

/**
 * Fastify: in test mode, a request's `x-raceguard-delay` header sets the
 * delays of the `delayPoint`s its handler passes; a malformed header gets a
 * 400. Outside test mode the header is ignored. Register at the root.
 *
 * @example
 * ```ts
 * await app.register(fastifyDelays());
 * ```
 */
export function fastifyDelays(): FastifyPluginAsync {
  const plugin: FastifyPluginAsync = (app) => {
    app.addHook('onRequest', (request, reply, done) => {
      const header = headerValue(request.headers[DELAY_HEADER]);
      if (header === undefined || !delaysEnabled()) {
        done();
        return;
      }
      try {
        // The rest of the request's life runs inside the scope (as @fastify/request-context does).
        withRequestDelays(header, () => done());
      } catch (error) {
        void reply.code(400).send({ error: badHeader(error) });
      }
    });
    return Promise.resolve();
  };
  return unencapsulated(plugin, 'raceguard-delays');
}

/**
 * Express (connect-style): the same as {@link fastifyDelays}.
 *
 * @example
 * ```ts
 * app.use(expressDelays());
 * ```
 */
export function expressDelays(): (
  request: IncomingMessage,
  response: ServerResponse,
  next: (error?: unknown) => void,
) => void {
  return (request, response, next) => {
    const header = headerValue(request.headers[DELAY_HEADER]);
    if (header === undefined || !delaysEnabled()) {
      next();
      return;
    }
    try {
      withRequestDelays(header, () => next());
    } catch (error) {
      response.statusCode = 400;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ error: badHeader(error) }));
    }
  };
}

/**
 * Hono: the same as {@link fastifyDelays}.
 *
 * @example
 * ```ts
 * app.use('*', honoDelays());
 * ```
 */
export function honoDelays(): MiddlewareHandler {
  return async (c: Context, next) => {
    const header = c.req.header(DELAY_HEADER);
    if (header === undefined || !delaysEnabled()) {
      await next();
      return;
    }
    let scoped: Promise<void>;
    try {
      scoped = withRequestDelays(header, () => next());
    } catch (error) {
      return c.json({ error: badHeader(error) }, 400);
    }
    await scoped;
    return undefined;
  };
}
