/**
 * `raceguard/http`: idempotency keys as HTTP middleware for Fastify,
 * Express and Hono, with the IETF draft's semantics.
 *
 * @packageDocumentation
 */
export { fastifyIdempotency, type FastifyIdempotencyOptions } from './fastify.js';
export {
  expressIdempotency,
  BodyNotParsedError,
  type ExpressIdempotencyOptions,
  type ExpressMiddleware,
  type ExpressRequestLike,
} from './express.js';
export { honoIdempotency, type HonoIdempotencyOptions } from './hono.js';
export {
  DEFAULT_REPLAY_HEADERS,
  PROBLEM_TYPES,
  type HttpIdempotencyOptions,
  type StoredHttpResponse,
} from './policy.js';
export { fastifyClock, expressClock, honoClock, type HttpClockOptions } from './clock.js';
export {
  fastifyReplicaSession,
  expressReplicaSession,
  honoReplicaSession,
  replicaSessionOf,
  type ReplicaSessionOptions,
} from './replica-session.js';
export { fastifyDelays, expressDelays, honoDelays } from './delays.js';
export {
  conditionalWrites,
  etagOf,
  parseEntityTags,
  sendFastify,
  sendExpress,
  toResponse,
  CONDITIONAL_PROBLEMS,
  type ConditionalWrites,
  type ConditionalWriteOptions,
  type ConditionalHeaders,
  type VersionStore,
  type Versioned,
} from './conditional.js';
export { FieldNotWritableError } from '../core/versioned-store.js';
