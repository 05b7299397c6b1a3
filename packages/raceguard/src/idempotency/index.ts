/** Idempotency keys: the framework-free core. */
export {
  idempotent,
  claimIdempotency,
  type IdempotencyOptions,
  type IdempotentOptions,
  type IdempotentResult,
  type IdempotentContext,
  type ConcurrentPolicy,
  type Claim,
  type Replay,
  type Execution,
} from './idempotent.js';
export {
  InvalidIdempotencyKeyError,
  IdempotencyInFlightError,
  IdempotencyKeyReusedError,
  IdempotencyStoreError,
  IdempotencyClaimLostError,
  type InvalidKeyReason,
} from './errors.js';
export { validateIdempotencyKey, parseIdempotencyKeyHeader, type KeyRules } from './key.js';
export {
  canonicalJson,
  fingerprintRequest,
  fingerprintPayload,
  type RequestShape,
} from './fingerprint.js';
export { MemoryIdempotencyStore, type MemoryIdempotencyStoreOptions } from './memory-store.js';
export type {
  IdempotencyStore,
  ClaimRequest,
  ClaimResult,
  OwnerRequest,
  RecordId,
} from './store.js';
