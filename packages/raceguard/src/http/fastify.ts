/**
 * `raceguard/http/fastify`: raceguard's HTTP features as Fastify plugins
 * (idempotency keys, the hybrid logical clock, replica sessions, test-mode
 * delays) and `sendFastify` for conditional writes. Only this entry point's
 * types refer to Fastify's, so an app on another framework needs no Fastify
 * installed.
 *
 * @packageDocumentation
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Execution } from '../idempotency/idempotent.js';
import {
  createPolicy,
  decide,
  finish,
  type HttpIdempotencyOptions,
  type ImmediateResponse,
  type StoredHttpResponse,
} from './policy.js';
import { unencapsulated } from './hooks.js';
import type { HybridLogicalClock } from '../clock/hlc.js';
import { formatHlc } from '../clock/hlc.js';
import { assertClock, headerOf, receive, type HttpClockOptions } from './clock.js';
import type { ReplicaRouter } from '../postgres/replica-router.js';
import {
  attachSession,
  attachedSession,
  settingsOf,
  tokenIn,
  tokenOut,
  type ReplicaSessionOptions,
} from './replica-session.js';
import {
  DELAY_HEADER,
  DELAY_REACHED_HEADER,
  openDelayScope,
  reachedValue,
  runInDelayScope,
} from '../delay/delay-point.js';
import { requestDelays } from './delays.js';

/** Options of {@link fastifyIdempotency}. */
export type FastifyIdempotencyOptions = HttpIdempotencyOptions<FastifyRequest>;

function send(reply: FastifyReply, response: ImmediateResponse): FastifyReply {
  return reply.code(response.status).headers(response.headers).send(response.body);
}

/**
 * A Fastify plugin that makes the guarded routes (POST and PATCH by
 * default) idempotent per the IETF draft: a retry with the same
 * `Idempotency-Key` gets the first response replayed (status, body,
 * allowlisted headers, `Idempotent-Replayed: true`) and the handler runs at
 * most once. The plugin is not encapsulated: registered at the root it
 * guards every route, registered inside a plugin it guards that plugin's
 * routes.
 *
 * @example
 * ```ts
 * await app.register(fastifyIdempotency({
 *   store: new RedisIdempotencyStore({ client: redis }),
 *   scope: (request) => request.user.id,
 * }));
 * ```
 */
export function fastifyIdempotency(options: FastifyIdempotencyOptions): FastifyPluginAsync {
  const policy = createPolicy(options);
  const running = new WeakMap<FastifyRequest, Execution<StoredHttpResponse>>();
  const report = (error: Error, request: FastifyRequest): void => {
    if (options.onError !== undefined) options.onError(error, request);
    else request.log.error({ err: error }, 'idempotency record not stored');
  };

  const plugin = (app: FastifyInstance): Promise<void> => {
    // Callback-style hooks: an async hook costs a promise on every request,
    // the unguarded ones (GET) included.
    app.addHook('preHandler', (request, reply, done) => {
      decide(policy, {
        request,
        method: request.method,
        url: request.url,
        headerValue: request.headers[policy.header],
        body: request.body,
      }).then((decision) => {
        // Answered here: Fastify expects no `done` after a reply from a hook.
        if (decision.kind === 'respond') return void send(reply, decision.response);
        if (decision.kind === 'proceed') running.set(request, decision.execution);
        done();
      }, done);
    });
    app.addHook('onSend', (request, reply, payload, done) => {
      const execution = running.get(request);
      if (execution === undefined) return done(null, payload);
      running.delete(request);
      const body =
        typeof payload === 'string' || payload instanceof Uint8Array
          ? payload
          : payload === null || payload === undefined
            ? undefined
            : null;
      const stored: Promise<Error | undefined> =
        body === null
          ? // A stream cannot be stored: treat the request as not completed.
            execution.abandon().then(
              () => undefined,
              (error: unknown) => error as Error,
            )
          : finish(policy, execution, {
              status: reply.statusCode,
              headers: reply.getHeaders(),
              body,
            });
      stored.then((error) => {
        // An `onError` that throws fails the hook, as it would an async one.
        try {
          if (error !== undefined) report(error, request);
        } catch (thrown) {
          return done(thrown as Error);
        }
        done(null, payload);
      }, done);
    });
    // The response never reached onSend (the client went away first): free the key.
    app.addHook('onResponse', (request, _reply, done) => {
      const execution = running.get(request);
      if (execution === undefined) return done();
      running.delete(request);
      execution
        .abandon()
        .catch((error: unknown) => report(error as Error, request))
        .then(() => done(), done);
    });
    return Promise.resolve();
  };
  return unencapsulated(plugin, 'raceguard-idempotency');
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
 * Fastify: every request gets a session (`replicaSessionOf(request)`); the
 * reply carries the token of its last write. Register at the root.
 *
 * @example
 * ```ts
 * await app.register(fastifyReplicaSession(router));
 * ```
 */
export function fastifyReplicaSession(
  router: ReplicaRouter,
  options: ReplicaSessionOptions = {},
): FastifyPluginAsync {
  const settings = settingsOf(router, options);
  const initial = new WeakMap<FastifyRequest, string | undefined>();
  const plugin: FastifyPluginAsync = (app) => {
    app.addHook('onRequest', (request, _reply, done) => {
      const token = tokenIn(settings, (name) => {
        const value = request.headers[name];
        return Array.isArray(value) ? value[0] : value;
      });
      initial.set(request, token);
      attachSession(request, router.session(token));
      done();
    });
    app.addHook('onSend', async (request, reply, payload) => {
      const session = attachedSession(request);
      const out = session && tokenOut(settings, session, initial.get(request));
      if (out !== undefined) reply.header(out[0], out[1]);
      return payload;
    });
    return Promise.resolve();
  };
  return unencapsulated(plugin, 'raceguard-replica-session');
}

/**
 * Fastify: in test mode, a request's `x-raceguard-delay` header sets the
 * delays of the `delayPoint`s its handler passes, and the response's
 * `x-raceguard-delay-reached` header lists those it reached; a malformed
 * header gets a 400. Outside test mode the header is ignored. Register at
 * the root.
 *
 * @example
 * ```ts
 * await app.register(fastifyDelays());
 * ```
 */
export function fastifyDelays(): FastifyPluginAsync {
  const scopes = new WeakMap<FastifyRequest, NonNullable<ReturnType<typeof openDelayScope>>>();
  const plugin: FastifyPluginAsync = (app) => {
    app.addHook('onRequest', (request, reply, done) => {
      const { scope, refusal } = requestDelays(request.headers[DELAY_HEADER]);
      if (refusal !== undefined) {
        void reply.code(400).send({ error: refusal });
        return;
      }
      if (scope === undefined) {
        done();
        return;
      }
      scopes.set(request, scope);
      // The rest of the request's life runs inside the scope (as @fastify/request-context does).
      runInDelayScope(scope, () => done());
    });
    app.addHook('onSend', async (request, reply, payload) => {
      const scope = scopes.get(request);
      if (scope !== undefined) reply.header(DELAY_REACHED_HEADER, reachedValue(scope));
      return payload;
    });
    return Promise.resolve();
  };
  return unencapsulated(plugin, 'raceguard-delays');
}

/**
 * Sends a response of {@link conditionalWrites} with Fastify.
 *
 * @example
 * ```ts
 * app.get('/documents/:id', async (req, reply) => sendFastify(reply, await documents.read({ id: req.params.id }, req.headers)));
 * ```
 */
export function sendFastify(reply: FastifyReply, response: ImmediateResponse): FastifyReply {
  return reply
    .code(response.status)
    .headers(response.headers)
    .send(response.body === '' ? undefined : response.body);
}
