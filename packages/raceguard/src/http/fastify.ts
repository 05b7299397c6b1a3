/** Idempotency keys for Fastify. */
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
    app.addHook('preHandler', async (request, reply) => {
      const decision = await decide(policy, {
        request,
        method: request.method,
        url: request.url,
        headerValue: request.headers[policy.header],
        body: request.body,
      });
      if (decision.kind === 'respond') return send(reply, decision.response);
      if (decision.kind === 'proceed') running.set(request, decision.execution);
      return undefined;
    });
    app.addHook('onSend', async (request, reply, payload) => {
      const execution = running.get(request);
      if (execution === undefined) return payload;
      running.delete(request);
      const body =
        typeof payload === 'string' || payload instanceof Uint8Array
          ? payload
          : payload === null || payload === undefined
            ? undefined
            : null;
      if (body === null) {
        // A stream cannot be stored: treat the request as not completed.
        await execution.abandon().catch((error: unknown) => report(error as Error, request));
        return payload;
      }
      const error = await finish(policy, execution, {
        status: reply.statusCode,
        headers: reply.getHeaders(),
        body,
      });
      if (error !== undefined) report(error, request);
      return payload;
    });
    // The response never reached onSend (the client went away first): free the key.
    app.addHook('onResponse', async (request) => {
      const execution = running.get(request);
      if (execution === undefined) return;
      running.delete(request);
      await execution.abandon().catch((error: unknown) => report(error as Error, request));
    });
    return Promise.resolve();
  };
  return unencapsulated(plugin, 'raceguard-idempotency');
}
