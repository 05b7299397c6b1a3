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

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

/** @internal What a request's delay header asks of an adapter. */
export type DelayRequest =
  /** Run the request as usual: no header, not in test mode, or no delay named. */
  | { readonly scope?: undefined; readonly refusal?: undefined }
  /** Run the rest of the request inside `scope`; list its reached points in the response. */
  | { readonly scope: DelayScope; readonly refusal?: undefined }
  /** Answer 400 with this message: the header is malformed. */
  | { readonly scope?: undefined; readonly refusal: string };

type DelayScope = NonNullable<ReturnType<typeof openDelayScope>>;

/** @internal The one reading of the delay header behind every framework's adapter. */
export function requestDelays(header: string | string[] | undefined): DelayRequest {
  const value = headerValue(header);
  if (value === undefined || !delaysEnabled()) return {};
  try {
    const scope = openDelayScope(value);
    return scope === undefined ? {} : { scope };
  } catch (error) {
    return {
      refusal:
        error instanceof InvalidArgumentError ? error.message : `invalid ${DELAY_HEADER} header`,
    };
  }
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
    const { scope, refusal } = requestDelays(request.headers[DELAY_HEADER]);
    if (refusal !== undefined) {
      response.statusCode = 400;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ error: refusal }));
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
