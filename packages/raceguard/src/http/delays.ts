import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidArgumentError } from '../core/errors.js';
import {
  DELAY_HEADER,
  DELAY_REACHED_HEADER,
  delaysEnabled,
  openDelayScope,
  reachedValue,
  runInDelayScope,
} from '../delay/delay-point.js';
import { onHeaders } from './hooks.js';

/** @internal */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

/** @internal */
export function badHeader(error: unknown): string {
  return error instanceof InvalidArgumentError ? error.message : `invalid ${DELAY_HEADER} header`;
}

/**
 * Express (connect-style): in test mode, a request's `x-raceguard-delay` header sets the
 * delays of the `delayPoint`s its handler passes, and the response's
 * `x-raceguard-delay-reached` header lists those it reached; a malformed
 * header gets a 400. Outside test mode the header is ignored.
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
    let scope: ReturnType<typeof openDelayScope>;
    try {
      scope = openDelayScope(header);
    } catch (error) {
      response.statusCode = 400;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ error: badHeader(error) }));
      return;
    }
    if (scope === undefined) {
      next();
      return;
    }
    const opened = scope;
    // Said as the headers go out: every point the handler passed by then.
    onHeaders(response, () => response.setHeader(DELAY_REACHED_HEADER, reachedValue(opened)));
    runInDelayScope(opened, () => next());
  };
}
