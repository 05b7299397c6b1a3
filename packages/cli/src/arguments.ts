/**
 * Argument checks of the CLI package's public functions (the burst clients,
 * `runScenario`, the lab): the library's own, from `raceguard/validate`, so
 * that a refusal reads the same from the command as from the library.
 */
export {
  assertPositiveInteger,
  assertNonNegativeInteger,
  assertNonNegativeFinite,
  assertOneOf,
  assertPlainObject,
  assertAbortSignal,
  messageOf,
  isAborted,
} from 'raceguard/validate';
