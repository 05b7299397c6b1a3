/**
 * Hybrid logical clock timestamps over HTTP, for Fastify, Express and
 * Hono: the request's `x-hlc` header (when present) moves the server's
 * clock past the caller's, and the response carries a timestamp taken as
 * the headers go out, after everything the handler did. A malformed header
 * or one too far ahead gets a 400 with the error's code; the clock is
 * unchanged.
 */
import type { ServerResponse, IncomingMessage } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import type { MiddlewareHandler } from 'hono';
import { RaceguardError } from '../core/errors.js';
import { assertNonEmptyString } from '../core/validate.js';
import { HLC_HEADER } from '../clock/headers.js';
import { formatHlc, parseHlc, type HybridLogicalClock } from '../clock/hlc.js';
import { onHeaders, unencapsulated } from './hooks.js';

/** Options of the HTTP clock middlewares. */
export interface HttpClockOptions {
  /** The header read and written. @default 'x-hlc' */
  readonly header?: string;
}

function headerOf(options: HttpClockOptions): string {
  const header = (options.header ?? HLC_HEADER).toLowerCase();
  assertNonEmptyString('options.header', header);
  return header;
}

function assertClock(clock: HybridLogicalClock): void {
  if (typeof (clock as Partial<HybridLogicalClock>)?.receive !== 'function') {
    throw new TypeError('clock must be a HybridLogicalClock');
  }
}

/** Receive the request's stamp; the error to answer 400 with, if any. */
function receive(
  clock: HybridLogicalClock,
  value: string | string[] | undefined | null,
): { error: string; message: string } | undefined {
  if (value === undefined || value === null) return undefined;
  try {
    clock.receive(parseHlc(Array.isArray(value) ? value.join(',') : value));
    return undefined;
  } catch (error) {
    if (error instanceof RaceguardError) return { error: error.code, message: error.message };
    throw error;
  }
}

/**
 * A Fastify plugin (not encapsulated: register it at the root).
 *
 * @example
 * ```ts
 * await app.register(fastifyClock(clock));
 * ```
 */
export function fastifyClock(
  clock: HybridLogicalClock,
  options: HttpClockOptions = {},
): FastifyPluginAsync {
  assertClock(clock);
  const header = headerOf(options);
  const plugin: FastifyPluginAsync = (app) => {
    app.addHook('onRequest', async (request, reply) => {
      const refused = receive(clock, request.headers[header]);
      if (refused !== undefined) await reply.code(400).send(refused);
    });
    app.addHook('onSend', async (_request, reply, payload) => {
      reply.header(header, formatHlc(clock.now()));
      return payload;
    });
    return Promise.resolve();
  };
  return unencapsulated(plugin, 'raceguard-clock');
}

/**
 * An Express (connect-style) middleware.
 *
 * @example
 * ```ts
 * app.use(expressClock(clock));
 * ```
 */
export function expressClock(
  clock: HybridLogicalClock,
  options: HttpClockOptions = {},
): (request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void) => void {
  assertClock(clock);
  const header = headerOf(options);
  return (request, response, next) => {
    const refused = receive(clock, request.headers[header]);
    if (refused !== undefined) {
      response.statusCode = 400;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(refused));
      return;
    }
    // Stamped as the headers go out: after everything the handler did.
    onHeaders(response, () => response.setHeader(header, formatHlc(clock.now())));
    next();
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
