/**
 * Hybrid logical clock timestamps over HTTP (Express here; Fastify and Hono
 * in their adapters): the request's `x-hlc` header (when present) moves the server's
 * clock past the caller's, and the response carries a timestamp taken as
 * the headers go out, after everything the handler did. A malformed header
 * or one too far ahead gets a 400 with the error's code; the clock is
 * unchanged.
 */
import type { ServerResponse, IncomingMessage } from 'node:http';
import { RaceguardError } from '../core/errors.js';
import { assertNonEmptyString } from '../core/validate.js';
import { HLC_HEADER } from '../clock/headers.js';
import { formatHlc, parseHlc, type HybridLogicalClock } from '../clock/hlc.js';
import { onHeaders } from './hooks.js';

/** Options of the HTTP clock middlewares. */
export interface HttpClockOptions {
  /** The header read and written. @default 'x-hlc' */
  readonly header?: string;
}

/** @internal The header the clock middlewares read and write. */
export function headerOf(options: HttpClockOptions): string {
  const header = (options.header ?? HLC_HEADER).toLowerCase();
  assertNonEmptyString('options.header', header);
  return header;
}

/** @internal */
export function assertClock(clock: HybridLogicalClock): void {
  if (typeof (clock as Partial<HybridLogicalClock>)?.receive !== 'function') {
    throw new TypeError('clock must be a HybridLogicalClock');
  }
}

/** @internal Receive the request's stamp; the error to answer 400 with, if any. */
export function receive(
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
