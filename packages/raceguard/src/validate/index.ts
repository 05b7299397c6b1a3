/**
 * `raceguard/validate`: the argument and option checks every raceguard
 * adapter runs, for code built on raceguard (a new lock backend, a scenario
 * library, the `raceguard` command). Each check throws raceguard's
 * `InvalidArgumentError` naming the argument, what was expected and what was
 * received, before any side effect.
 *
 * @packageDocumentation
 */
export {
  assertNonEmptyString,
  assertPositiveInteger,
  assertNonNegativeInteger,
  assertSafeInteger,
  assertNonNegativeFinite,
  assertFunction,
  assertOneOf,
  assertPlainObject,
  assertAbortSignal,
  assertKnownOptions,
  unknownOption,
  assertVersion,
} from '../core/validate.js';
export { messageOf } from '../core/errors.js';
export { isAborted } from '../core/abort.js';
