/**
 * `canonicalJson` writes plain JSON values directly and leaves everything
 * else to `JSON.stringify` with a sorting replacer. A fingerprint that
 * changed would turn every retry of a request in flight during an upgrade
 * into a "key reused" refusal, so the direct path must give the replacer's
 * text, byte for byte, for every input: attacked here with fast-check
 * (seed printed) against the replacer alone, on parsed JSON, on arbitrary
 * values (dates, buffers, typed arrays, `toJSON`, null prototypes, sparse
 * arrays, functions, symbols) and on the member names the direct path must
 * refuse (digit-led names, which JavaScript enumerates as array indices,
 * and `__proto__`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalJson } from '../../packages/raceguard/src/idempotency/fingerprint.js';

const SEED = Number(process.env.RACEGUARD_SEED ?? Date.now() % 100_000);

/** The definition: JSON.stringify, each object's members copied in sorted order. */
function reference(value: unknown): string {
  return (
    JSON.stringify(value, (_key, member: unknown) => {
      if (member === null || typeof member !== 'object' || Array.isArray(member)) return member;
      if (Buffer.isBuffer(member) || ArrayBuffer.isView(member)) return member;
      const sorted: Record<string, unknown> = {};
      for (const name of Object.keys(member).sort()) {
        sorted[name] = (member as Record<string, unknown>)[name];
      }
      return sorted;
    }) ?? 'undefined'
  );
}

/** The outcome of a call: its text, or the class of what it threw. */
function outcome(fn: () => string): string {
  try {
    return `ok ${fn()}`;
  } catch (error) {
    return `throws ${(error as Error).constructor.name}`;
  }
}

function agrees(value: unknown): void {
  assert.equal(
    outcome(() => canonicalJson(value)),
    outcome(() => reference(value)),
  );
}

/** Member names JavaScript orders specially, mixed with ordinary ones. */
const awkwardName = fc.oneof(
  fc.string(),
  fc.constantFrom('0', '1', '2', '10', '01', '-1', '1.5', '4294967295', '__proto__', 'toJSON', ''),
  fc.nat().map(String),
);

describe(
  `canonicalJson gives the sorting replacer's text for every input (seed ${SEED})`,
  { timeout: 60_000 },
  () => {
    it('parsed JSON, including digit-led and __proto__ member names', () => {
      const json = fc
        .letrec((tie) => ({
          value: fc.oneof(
            { depthSize: 'small' },
            fc.constant(null),
            fc.boolean(),
            fc.double(),
            fc.integer(),
            fc.string(),
            fc.array(tie('value')),
            fc.array(fc.tuple(awkwardName, tie('value'))),
          ),
        }))
        .value.map((tree) => {
          // Objects written as JSON text and parsed, as a request body is.
          const text = (node: unknown): string => {
            if (
              Array.isArray(node) &&
              node.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string')
            )
              return `{${(node as [string, unknown][]).map(([k, v]) => `${JSON.stringify(k)}:${text(v)}`).join(',')}}`;
            if (Array.isArray(node)) return `[${node.map(text).join(',')}]`;
            return JSON.stringify(node) ?? 'null';
          };
          return JSON.parse(text(tree)) as unknown;
        });
      fc.assert(fc.property(json, agrees), { seed: SEED, numRuns: 3000 });
    });

    it('arbitrary values: dates, buffers, typed arrays, null prototypes, sparse arrays, functions, symbols, bigints', () => {
      const special = fc.oneof(
        fc.date({ noInvalidDate: false }),
        fc.uint8Array().map((bytes) => Buffer.from(bytes)),
        fc.uint8Array(),
        fc.constant(() => 1),
        fc.constant(Symbol('s')),
        fc.bigInt(),
        fc.constant(undefined),
        fc.constant({ toJSON: () => ({ b: 1, a: 2 }) }),
        fc.constant(Object.assign([1, 2], { toJSON: () => 'array' })),
      );
      const value = fc.letrec((tie) => ({
        value: fc.oneof(
          { depthSize: 'small' },
          fc.anything({
            withNullPrototype: true,
            withSparseArray: true,
            withBoxedValues: true,
            withObjectString: true,
            key: awkwardName,
          }),
          special,
          fc.array(tie('value')),
          fc.dictionary(awkwardName, tie('value')),
        ),
      })).value;
      fc.assert(fc.property(value, agrees), { seed: SEED, numRuns: 3000 });
    });

    it('deep nesting and cycles take the replacer path, and fail as it does', () => {
      let deep: unknown = { leaf: [1, { z: 0, a: 'x' }] };
      for (let i = 0; i < 200; i += 1) deep = { b: deep, a: [i] };
      agrees(deep);
      const cyclic: Record<string, unknown> = { b: 1 };
      cyclic.self = { a: cyclic };
      agrees(cyclic);
    });

    it('an inherited toJSON (a polluted Object.prototype) is honoured as JSON.stringify honours it', () => {
      const proto = Object.prototype as { toJSON?: () => unknown };
      proto.toJSON = () => 'polluted';
      try {
        agrees({ b: 1, a: 2 });
        assert.equal(canonicalJson({ b: 1 }), '"polluted"');
      } finally {
        delete proto.toJSON;
      }
    });

    it('member order and array order: one text for every member order, not for every array order', () => {
      assert.equal(
        canonicalJson({ b: 2, a: [1, { d: 4, c: 3 }] }),
        '{"a":[1,{"c":3,"d":4}],"b":2}',
      );
      assert.equal(canonicalJson(JSON.parse('{"b":1,"10":2,"2":3}')), '{"2":3,"10":2,"b":1}');
      assert.notEqual(canonicalJson([1, 2]), canonicalJson([2, 1]));
    });
  },
);
