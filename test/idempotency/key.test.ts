import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidIdempotencyKeyError } from '../../packages/raceguard/src/idempotency/errors.js';
import {
  canonicalJson,
  fingerprintRequest,
} from '../../packages/raceguard/src/idempotency/fingerprint.js';
import {
  parseIdempotencyKeyHeader,
  validateIdempotencyKey,
} from '../../packages/raceguard/src/idempotency/key.js';

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof InvalidIdempotencyKeyError, String(error));
    assert.equal(error.code, 'RACEGUARD_IDEMPOTENCY_KEY_INVALID');
    return error.reason;
  }
  assert.fail('expected InvalidIdempotencyKeyError');
}

describe('parseIdempotencyKeyHeader', () => {
  it('reads the structured-field string form, with escapes', () => {
    assert.equal(
      parseIdempotencyKeyHeader('"8e03978e-40d5-43e8-bc93-6894a57f9324"'),
      '8e03978e-40d5-43e8-bc93-6894a57f9324',
    );
    assert.equal(parseIdempotencyKeyHeader('"a \\"quoted\\" \\\\ key"'), 'a "quoted" \\ key');
    assert.equal(parseIdempotencyKeyHeader('  "padded"  '), 'padded');
  });

  it('accepts bare tokens, a single-element array, and absence', () => {
    assert.equal(parseIdempotencyKeyHeader('order-1:attempt/2'), 'order-1:attempt/2');
    assert.equal(parseIdempotencyKeyHeader(['"k"']), 'k');
    assert.equal(parseIdempotencyKeyHeader(undefined), undefined);
  });

  it('refuses malformed, empty, over-long, non-ASCII and repeated keys with a reason', () => {
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('')),
      'empty',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('""')),
      'empty',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('"open')),
      'syntax',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('"a"b')),
      'syntax',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('"a\\nb"')),
      'syntax',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('two words')),
      'syntax',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('a,b')),
      'syntax',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('clé')),
      'characters',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('"clé"')),
      'characters',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader(['a', 'b'])),
      'multiple',
    );
    assert.equal(
      reason(() => parseIdempotencyKeyHeader(`"${'k'.repeat(256)}"`)),
      'too-long',
    );
    assert.equal(parseIdempotencyKeyHeader(`"${'k'.repeat(255)}"`)?.length, 255);
    assert.equal(
      reason(() => parseIdempotencyKeyHeader('"abcdef"', { maxLength: 5 })),
      'too-long',
    );
  });

  it('validateIdempotencyKey checks keys given directly', () => {
    assert.equal(
      reason(() => validateIdempotencyKey(undefined)),
      'missing',
    );
    assert.equal(
      reason(() => validateIdempotencyKey(42)),
      'syntax',
    );
    assert.equal(
      reason(() => validateIdempotencyKey('tab\there')),
      'characters',
    );
    assert.equal(validateIdempotencyKey('with space'), 'with space');
  });
});

describe('fingerprints', () => {
  it('canonical JSON ignores member order at every depth but not array order', () => {
    assert.equal(canonicalJson({ b: 2, a: [1, { d: 4, c: 3 }] }), '{"a":[1,{"c":3,"d":4}],"b":2}');
    assert.notEqual(canonicalJson([1, 2]), canonicalJson([2, 1]));
  });

  it('a request fingerprint covers method, URL and body', () => {
    const base = { method: 'POST', url: '/pay', body: { amount: 10, currency: 'EUR' } };
    const same = fingerprintRequest({ ...base, body: { currency: 'EUR', amount: 10 } });
    assert.equal(fingerprintRequest(base), same);
    assert.notEqual(fingerprintRequest({ ...base, method: 'PATCH' }), same);
    assert.notEqual(fingerprintRequest({ ...base, url: '/pay?x=1' }), same);
    assert.notEqual(fingerprintRequest({ ...base, body: { amount: 11, currency: 'EUR' } }), same);
    assert.notEqual(fingerprintRequest({ ...base, body: '{"amount":10,"currency":"EUR"}' }), same);
    assert.notEqual(fingerprintRequest({ ...base, body: undefined }), same);
  });
});
