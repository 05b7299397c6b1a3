/**
 * Models for the linearizability checker: a register with reads, writes and
 * compare-and-set (Jepsen's etcd test), and a key-value map with get, put
 * and append, partitioned by key.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { Model, Operation } from './linearizability.js';

/** An operation on a register; `null` is "no value yet". */
export type RegisterInput =
  | { readonly op: 'read' }
  | { readonly op: 'write'; readonly value: number | string }
  | { readonly op: 'cas'; readonly from: number | string; readonly to: number | string };

/** What a register operation returned: a read's value, or whether a cas took effect. */
export type RegisterOutput = number | string | null | boolean;

type Value = number | string | null;

/**
 * A register with read, write and compare-and-set. A read returns the value
 * (`null` before any write); a write returns anything (ignored); a cas
 * returns `true` when it took effect (the value was `from`) and `false`
 * when it did not.
 *
 * @example
 * ```ts
 * checkLinearizable(registerModel, operations);
 * ```
 */
export const registerModel: Model<Value, RegisterInput, RegisterOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.op) {
      case 'read':
        return { ok: output === undefined || output === state, state };
      case 'write':
        return { ok: true, state: input.value };
      case 'cas': {
        const matches = state === input.from;
        const ok = output === undefined || output === matches;
        return { ok, state: matches ? input.to : state };
      }
    }
  },
  equal: (a, b) => a === b,
  key: (state) => (state === null ? 'null' : `${typeof state}:${state}`),
};

/** An operation on a key-value map. */
export type KvInput =
  | { readonly op: 'get'; readonly key: string }
  | { readonly op: 'put'; readonly key: string; readonly value: string }
  | { readonly op: 'append'; readonly key: string; readonly value: string };

/**
 * A map of string keys to string values (`''` when absent) with get, put
 * and append (a get returns the value; put and append return anything),
 * checked key by key.
 *
 * @example
 * ```ts
 * checkLinearizable(kvModel, operations); // each key's operations on their own
 * ```
 */
export const kvModel: Model<string, KvInput, string> = {
  init: () => '',
  step(state, input, output) {
    switch (input.op) {
      case 'get':
        return { ok: output === undefined || output === state, state };
      case 'put':
        return { ok: true, state: input.value };
      case 'append':
        return { ok: true, state: state + input.value };
    }
  },
  equal: (a, b) => a === b,
  key: (state) => state,
  partition(operations) {
    const byKey = new Map<string, Operation<KvInput, string>[]>();
    for (const op of operations) {
      let part = byKey.get(op.input.key);
      if (part === undefined) byKey.set(op.input.key, (part = []));
      part.push(op);
    }
    return [...byKey.values()];
  },
};

/** An operation on a counter: add (returns anything) or read (returns the count). */
export type CounterInput =
  { readonly op: 'add'; readonly amount: number } | { readonly op: 'read' };

/**
 * A counter starting at 0: `add` changes it, `read` returns it.
 *
 * @example
 * ```ts
 * checkLinearizable(counterModel, operations);
 * ```
 */
export const counterModel: Model<number, CounterInput, number | null> = {
  init: () => 0,
  step(state, input, output) {
    if (input.op === 'add') return { ok: true, state: state + input.amount };
    return { ok: output === undefined || output === state, state };
  },
  equal: (a, b) => a === b,
  key: (state) => String(state),
};

/** An operation on a set of strings: add (returns anything) or read (returns the members, any order). */
export type SetInput = { readonly op: 'add'; readonly value: string } | { readonly op: 'read' };

/**
 * A set of strings, empty at first: `add` puts a member in, `read` returns
 * every member (in any order).
 *
 * @example
 * ```ts
 * checkLinearizable(setModel, operations);
 * ```
 */
export const setModel: Model<readonly string[], SetInput, readonly string[] | null> = {
  init: () => [],
  step(state, input, output) {
    if (input.op === 'add') {
      if (state.includes(input.value)) return { ok: true, state };
      return { ok: true, state: [...state, input.value].sort() };
    }
    if (output === undefined) return { ok: true, state };
    const seen = output === null ? [] : [...output].sort();
    return {
      ok: seen.length === state.length && seen.every((v, i) => v === state[i]),
      state,
    };
  },
  equal: (a, b) => a.length === b.length && a.every((v, i) => v === b[i]),
  key: (state) => JSON.stringify(state),
};

/** An operation on a FIFO queue: enqueue (returns anything) or dequeue (returns the head, `null` when empty). */
export type QueueInput =
  { readonly op: 'enqueue'; readonly value: string } | { readonly op: 'dequeue' };

/**
 * A FIFO queue, empty at first.
 *
 * @example
 * ```ts
 * checkLinearizable(queueModel, operations);
 * ```
 */
export const queueModel: Model<readonly string[], QueueInput, string | null> = {
  init: () => [],
  step(state, input, output) {
    if (input.op === 'enqueue') return { ok: true, state: [...state, input.value] };
    const head = state[0] ?? null;
    return {
      ok: output === undefined || output === head,
      state: head === null ? state : state.slice(1),
    };
  },
  equal: (a, b) => a.length === b.length && a.every((v, i) => v === b[i]),
  key: (state) => JSON.stringify(state),
};

/** The models by the names the CLI and scenario files use. */
export const MODELS = {
  register: registerModel,
  'cas-register': registerModel,
  counter: counterModel,
  set: setModel,
  kv: kvModel,
  queue: queueModel,
} as const;

/** A model's name in {@link MODELS}. */
export type ModelName = keyof typeof MODELS;

/** The model called `name` (for histories whose inputs and outputs are only known at run time). */
export function modelByName(name: ModelName): Model<unknown, unknown, unknown> {
  const model = (MODELS as Record<string, unknown>)[name];
  if (model === undefined) {
    throw new InvalidArgumentError('model', `one of ${Object.keys(MODELS).join(', ')}`, name);
  }
  return model as Model<unknown, unknown, unknown>;
}

/** A register's value: `null` is "no value yet". */
const isValue = (v: unknown): boolean =>
  v === null || typeof v === 'number' || typeof v === 'string';
const isString = (v: unknown): boolean => typeof v === 'string';

/** Per model: each operation it knows, and the fields that operation's input needs. */
const SHAPES: Record<ModelName, Record<string, Record<string, (v: unknown) => boolean>>> = {
  register: { read: {}, write: { value: isValue }, cas: { from: isValue, to: isValue } },
  'cas-register': { read: {}, write: { value: isValue }, cas: { from: isValue, to: isValue } },
  counter: { add: { amount: (v) => typeof v === 'number' && Number.isFinite(v) }, read: {} },
  set: { add: { value: isString }, read: {} },
  kv: {
    get: { key: isString },
    put: { key: isString, value: isString },
    append: { key: isString, value: isString },
  },
  queue: { enqueue: { value: isString }, dequeue: {} },
};

/**
 * Why `operations` are not operations of the model `name` (the first
 * input that is not one of its operations, or lacks a field), or
 * `undefined` when every input fits. Checking a history against a model
 * it was not recorded for would otherwise give a false verdict.
 *
 * @example
 * ```ts
 * const problem = operationsMisfit('counter', operations);
 * if (problem !== undefined) throw new Error(problem);
 * ```
 */
export function operationsMisfit(
  name: ModelName,
  operations: readonly { readonly input: unknown }[],
): string | undefined {
  const shapes = SHAPES[name];
  if (shapes === undefined)
    return `${String(name)} is not a model (${Object.keys(SHAPES).join(', ')})`;
  for (const [index, operation] of operations.entries()) {
    const input = operation.input as Record<string, unknown> | null | undefined;
    const op = typeof input === 'object' && input !== null ? input.op : undefined;
    const fields = typeof op === 'string' ? shapes[op] : undefined;
    if (fields === undefined) {
      return `operation ${index}: ${JSON.stringify(op ?? input ?? null)} is not an operation of the ${name} model (${Object.keys(shapes).join(', ')})`;
    }
    for (const [field, fits] of Object.entries(fields)) {
      if (!(field in (input as object)) || !fits((input as Record<string, unknown>)[field])) {
        return `operation ${index}: ${String(op)} on a ${name} needs ${field}, got ${JSON.stringify((input as Record<string, unknown>)[field] ?? null)}`;
      }
    }
  }
  return undefined;
}
