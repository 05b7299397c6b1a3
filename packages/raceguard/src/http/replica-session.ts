/**
 * The session token of `ReplicaRouter` carried between requests, so that a
 * person sees their own write on the next page, whichever instance of the
 * API serves it: in a cookie (the default) or a header. Each request gets a
 * `RoutedSession` holding the token it came with; the response carries the
 * token of the request's last write. A garbled or foreign token is simply
 * not honoured (its reads go to the primary).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject, assertPositiveInteger } from '../core/validate.js';
import type { ReplicaRouter, RoutedSession } from '../postgres/replica-router.js';
import { onHeaders } from './hooks.js';

/** Options of the replica-session middlewares. */
export interface ReplicaSessionOptions {
  /** Where the token travels. @default 'cookie' */
  readonly transport?: 'cookie' | 'header';
  /** The cookie's or header's name. @default 'rg_session' (cookie), 'x-raceguard-session' (header) */
  readonly name?: string;
  /**
   * How long the cookie lives after a write: reads within it are checked
   * against the write. Longer than any lag you expect. @default 60000
   */
  readonly maxAgeMs?: number;
  /** Add `Secure` to the cookie (HTTPS only). @default true */
  readonly secure?: boolean;
}

const OPTIONS = new Set(['transport', 'name', 'maxAgeMs', 'secure']);
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const TOKEN_TEXT = /^[A-Za-z0-9.]{1,80}$/;

interface Settings {
  readonly transport: 'cookie' | 'header';
  readonly name: string;
  readonly maxAgeMs: number;
  readonly secure: boolean;
}

/** @internal */
export function settingsOf(router: ReplicaRouter, options: ReplicaSessionOptions): Settings {
  if (typeof (router as Partial<ReplicaRouter> | undefined)?.session !== 'function') {
    throw new InvalidArgumentError('router', 'a ReplicaRouter', router);
  }
  assertPlainObject('options', options);
  assertKnownOptions('options', options, OPTIONS);
  const transport = options.transport ?? 'cookie';
  if (transport !== 'cookie' && transport !== 'header') {
    throw new InvalidArgumentError('options.transport', "'cookie' or 'header'", transport);
  }
  const name = options.name ?? (transport === 'cookie' ? 'rg_session' : 'x-raceguard-session');
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new InvalidArgumentError('options.name', '1 to 64 characters of A-Z a-z 0-9 _ -', name);
  }
  const maxAgeMs = options.maxAgeMs ?? 60_000;
  assertPositiveInteger('options.maxAgeMs', maxAgeMs);
  const secure = options.secure ?? true;
  if (typeof secure !== 'boolean')
    throw new InvalidArgumentError('options.secure', 'a boolean', secure);
  return { transport, name: transport === 'header' ? name.toLowerCase() : name, maxAgeMs, secure };
}

/** The token a request came with, or undefined (absent, or not even shaped like one). */
/** @internal */
export function tokenIn(
  settings: Settings,
  header: (name: string) => string | undefined,
): string | undefined {
  let value: string | undefined;
  if (settings.transport === 'header') {
    value = header(settings.name);
  } else {
    for (const part of (header('cookie') ?? '').split(';')) {
      const [key, ...rest] = part.trim().split('=');
      if (key === settings.name) value = rest.join('=');
    }
  }
  return value !== undefined && TOKEN_TEXT.test(value) ? value : undefined;
}

/** What to send back when the request wrote: [header name, value]. */
/** @internal */
export function tokenOut(
  settings: Settings,
  session: RoutedSession,
  initial: string | undefined,
): [string, string] | undefined {
  const token = session.token;
  if (token === undefined || token === initial) return undefined;
  if (settings.transport === 'header') return [settings.name, token];
  const attributes = [
    `${settings.name}=${token}`,
    'Path=/',
    'HttpOnly',
    'SameSite=Lax',
    `Max-Age=${Math.ceil(settings.maxAgeMs / 1000)}`,
    ...(settings.secure ? ['Secure'] : []),
  ];
  return ['set-cookie', attributes.join('; ')];
}

const sessions = new WeakMap<object, RoutedSession>();

/** @internal Binds a request (or a Hono context) to its session. */
export function attachSession(request: object, session: RoutedSession): void {
  sessions.set(request, session);
}

/** @internal The session bound to `request`, if any. */
export function attachedSession(request: object): RoutedSession | undefined {
  return sessions.get(request);
}

/**
 * The request's `RoutedSession` (a pool-like object: use it for the
 * request's queries), set by one of the middlewares below.
 *
 * @example
 * ```ts
 * const { rows } = await replicaSessionOf(request).query('SELECT name FROM users WHERE id = $1', [id]);
 * ```
 */
export function replicaSessionOf(request: object): RoutedSession {
  const session = sessions.get(request);
  if (session === undefined) {
    throw new InvalidArgumentError(
      'request',
      'a request that went through a replica-session middleware',
      request,
    );
  }
  return session;
}

/**
 * Express (connect-style): `replicaSessionOf(req)` in the handlers; the
 * token of the last write goes out as the headers do.
 *
 * @example
 * ```ts
 * app.use(expressReplicaSession(router));
 * ```
 */
export function expressReplicaSession(
  router: ReplicaRouter,
  options: ReplicaSessionOptions = {},
): (request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void) => void {
  const settings = settingsOf(router, options);
  return (request, response, next) => {
    const token = tokenIn(settings, (name) => {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    });
    const session = router.session(token);
    sessions.set(request, session);
    onHeaders(response, () => {
      const out = tokenOut(settings, session, token);
      if (out !== undefined) response.setHeader(out[0], out[1]);
    });
    next();
  };
}
