/**
 * `raceguard/http`: raceguard's HTTP features, framework-neutral and for
 * Express (connect-style): idempotency keys with the IETF draft's
 * semantics, the hybrid logical clock over headers, replica sessions,
 * test-mode delays, and conditional writes (ETag / If-Match). The Fastify
 * plugins are in `raceguard/http/fastify` and the Hono middlewares in
 * `raceguard/http/hono`, so that this entry point's types need neither
 * framework installed.
 *
 * @packageDocumentation
 */
export {
  expressIdempotency,
  BodyNotParsedError,
  type ExpressIdempotencyOptions,
  type ExpressMiddleware,
  type ExpressRequestLike,
} from './express.js';
export {
  DEFAULT_REPLAY_HEADERS,
  PROBLEM_TYPES,
  type HttpIdempotencyOptions,
  type StoredHttpResponse,
} from './policy.js';
export { expressClock, type HttpClockOptions } from './clock.js';
export {
  expressReplicaSession,
  replicaSessionOf,
  type ReplicaSessionOptions,
} from './replica-session.js';
export { expressDelays } from './delays.js';
export {
  conditionalWrites,
  etagOf,
  parseEntityTags,
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
