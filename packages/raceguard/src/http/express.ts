/** Idempotency keys for Express (and any connect-style framework). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { RaceguardError } from '../core/errors.js';
import {
  createPolicy,
  decide,
  finish,
  type HttpIdempotencyOptions,
  type ImmediateResponse,
} from './policy.js';

/** The request as Express hands it over: Node's request plus the parsed body. */
export interface ExpressRequestLike extends IncomingMessage {
  /** Set by a body parser (`express.json()`); must run before this middleware. */
  body?: unknown;
  /** Express's URL as the route saw it (path and query). */
  originalUrl?: string;
}

/** Options of {@link expressIdempotency}. */
export type ExpressIdempotencyOptions<Req extends ExpressRequestLike = ExpressRequestLike> =
  HttpIdempotencyOptions<Req>;

/** A connect-style middleware. */
export type ExpressMiddleware<Req extends ExpressRequestLike = ExpressRequestLike> = (
  request: Req,
  response: ServerResponse,
  next: (error?: unknown) => void,
) => void;

/** The body parser did not run before the middleware, so the payload could not be checked. */
export class BodyNotParsedError extends RaceguardError {
  constructor() {
    super(
      'RACEGUARD_IDEMPOTENCY_BODY_NOT_PARSED',
      'the request has a body but req.body is undefined: mount a body parser (express.json()) before the idempotency middleware, or key reuse with a different payload would go unnoticed',
    );
  }
}

function send(response: ServerResponse, immediate: ImmediateResponse): void {
  response.writeHead(immediate.status, immediate.headers);
  response.end(immediate.body);
}

function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return (
    request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
  );
}

type EndArguments = [chunk?: unknown, encoding?: unknown, callback?: unknown];

/**
 * An Express middleware that makes the guarded routes (POST and PATCH by
 * default) idempotent per the IETF draft. Mount it after the body parser
 * and after authentication (its `scope` reads the caller's identity); a
 * request with a body that reaches it unparsed is refused with
 * {@link BodyNotParsedError} rather than checked half-blind.
 *
 * @example
 * ```ts
 * app.use(express.json());
 * app.use(authenticate);
 * app.use(expressIdempotency({ store, scope: (req) => req.user.id }));
 * ```
 */
export function expressIdempotency<Req extends ExpressRequestLike = ExpressRequestLike>(
  options: ExpressIdempotencyOptions<Req>,
): ExpressMiddleware<Req> {
  const policy = createPolicy(options);
  const report = (error: Error, request: Req): void => options.onError?.(error, request);

  const run = async (request: Req, response: ServerResponse): Promise<boolean> => {
    const method = request.method ?? 'GET';
    if (
      policy.methods.has(method.toUpperCase()) &&
      request.body === undefined &&
      hasBody(request)
    ) {
      throw new BodyNotParsedError();
    }
    const decision = await decide(policy, {
      request,
      method,
      url: request.originalUrl ?? request.url ?? '/',
      headerValue: request.headers[policy.header],
      body: request.body,
    });
    if (decision.kind === 'pass') return true;
    if (decision.kind === 'respond') {
      send(response, decision.response);
      return false;
    }
    const { execution } = decision;
    const chunks: Buffer[] = [];
    let streamed = false;
    const collect = (chunk: unknown, encoding: unknown): void => {
      if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
      if (typeof chunk === 'string') {
        chunks.push(
          Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'),
        );
      } else if (chunk instanceof Uint8Array) chunks.push(Buffer.from(chunk));
      else streamed = true;
    };
    // Wrapped, not bound: the originals are put back exactly as they were.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const originalWrite = response.write;
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const originalEnd = response.end;
    response.write = function (this: ServerResponse, ...args: unknown[]) {
      collect(args[0], args[1]);
      return (originalWrite as (...a: unknown[]) => boolean).apply(this, args);
    } as ServerResponse['write'];
    response.end = function (this: ServerResponse, ...args: EndArguments) {
      response.write = originalWrite;
      response.end = originalEnd;
      collect(args[0], args[1]);
      const settle = streamed
        ? execution.abandon().then(
            () => undefined,
            (error: unknown) => error as Error,
          )
        : finish(policy, execution, {
            status: response.statusCode,
            headers: response.getHeaders(),
            body: Buffer.concat(chunks),
          });
      // The response leaves only once its record is stored, so a retry that
      // follows it at once is replayed rather than refused as in flight.
      void settle.then((error) => {
        if (error !== undefined) report(error, request);
        (originalEnd as (...a: unknown[]) => ServerResponse).apply(this, args);
      });
      return this;
    } as ServerResponse['end'];
    // The client went away before a response was produced: free the key.
    response.once('close', () => {
      if (!response.writableEnded && response.end !== originalEnd) {
        response.write = originalWrite;
        response.end = originalEnd;
        void execution.abandon().catch((error: unknown) => report(error as Error, request));
      }
    });
    return true;
  };

  return (request, response, next) => {
    run(request, response).then(
      (proceed) => {
        if (proceed) next();
      },
      (error: unknown) => next(error),
    );
  };
}
