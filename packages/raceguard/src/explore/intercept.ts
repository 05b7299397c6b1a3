import { InvalidArgumentError } from '../core/errors.js';
import { assertKnownOptions, assertPlainObject } from '../core/validate.js';
import { ANYTHING, redisFootprint, sqlFootprint, type Footprint } from './footprint.js';

/** Options of `ctx.wrap`. */
export interface WrapOptions {
  /**
   * The name shown in traces, e.g. `pg`, `redis`, `fetch`.
   * @default `pg` for a pg pool or client, `redis` for ioredis, the function's name for a function
   */
  readonly name?: string;
  /**
   * The methods that return promises, for objects raceguard does not
   * recognise. Every other method is passed through, bound to the object.
   * @default recognised from the object: `query` and `connect` for pg, every command for ioredis
   */
  readonly methods?: readonly string[];
  /**
   * What every call of a function, `fetch` or an object named by `methods`
   * touches, for the partial-order reduction and sampling: calls on
   * different resources commute. pg and ioredis calls are read from their
   * statements and keys instead.
   * @default anything: such a call may reach any table, key or service, so it conflicts with every step
   */
  readonly resource?: string;
}

type AnyFunction = (...args: unknown[]) => unknown;

const WRAP_OPTIONS = new Set(['name', 'methods', 'resource']);

/** What interception needs of a scheduler: run a call and decide when its caller sees the result. */
export interface CallInterceptor {
  call<T>(label: string, footprint: Footprint, invoke: () => Promise<T> | T): Promise<T>;
}

const MAX_LABEL = 72;

function shorten(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_LABEL ? `${flat.slice(0, MAX_LABEL - 1)}…` : flat;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    return String(value);
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  return typeof value;
}

function isFunction(value: unknown): value is AnyFunction {
  return typeof value === 'function';
}

interface Describer {
  (
    method: string,
    args: readonly unknown[],
  ): { readonly label: string; readonly footprint: Footprint };
}

const pgDescriber =
  (name: string): Describer =>
  (method, args) => {
    const first = args[0];
    const text =
      typeof first === 'string'
        ? first
        : typeof first === 'object' &&
            first !== null &&
            typeof (first as { text?: unknown }).text === 'string'
          ? (first as { text: string }).text
          : '';
    return method === 'query'
      ? { label: shorten(`${name}.query ${text}`), footprint: sqlFootprint(text) }
      : { label: `${name}.${method}`, footprint: undefined }; // a connection: the pool is anyone's
  };

/** The footprint of a call raceguard cannot read: the declared resource, written, or anything. */
const declared = (resource: string | undefined): Footprint =>
  resource === undefined ? ANYTHING : [{ resource, write: true }];

/** `name.method key`; what the call touches is read from its method and arguments. */
const commandDescriber =
  (name: string, footprint: (method: string, args: readonly unknown[]) => Footprint): Describer =>
  (method, args) => {
    const key = args.length > 0 && !isFunction(args[0]) ? describe(args[0]) : undefined;
    return {
      label: shorten(`${name}.${method}${key === undefined ? '' : ` ${key}`}`),
      footprint: footprint(method, args),
    };
  };

/** A plain function: `name(first argument)`. */
const functionDescriber =
  (name: string, resource: string | undefined): Describer =>
  (_method, args) => ({
    label: shorten(`${name}(${args.length === 0 ? '' : describe(args[0])})`),
    footprint: declared(resource),
  });

function requestDescriber(name: string, resource: string | undefined): Describer {
  return (_method, args) => {
    const first = args[0];
    const second = args[1] as { method?: unknown } | undefined;
    let url: string;
    let method = typeof second?.method === 'string' ? second.method : 'GET';
    if (typeof first === 'string' || first instanceof URL) url = String(first);
    else if (
      typeof first === 'object' &&
      first !== null &&
      typeof (first as { url?: unknown }).url === 'string'
    ) {
      url = (first as { url: string }).url;
      const own = (first as { method?: unknown }).method;
      if (typeof own === 'string' && second?.method === undefined) method = own;
    } else url = describe(first);
    // The server is a black box: any request, a GET too, may reach any of its
    // tables or change what it does next, so a request touches anything
    // unless the test says what.
    return {
      label: shorten(`${name} ${method.toUpperCase()} ${url}`),
      footprint: declared(resource),
    };
  };
}

interface Shape {
  readonly name: string;
  readonly methods: ReadonlySet<string>;
  readonly describe: Describer;
  /** Wraps what an async method resolved to (a pg pool's `connect` returns a client). */
  readonly wrapResult?: (method: string, value: unknown) => unknown;
  /** Wraps what a plain method returned (ioredis `multi()` returns a pipeline). */
  readonly wrapSync?: (method: string, value: unknown) => unknown;
}

function looksLikePg(target: Record<string, unknown>): boolean {
  return (
    isFunction(target['query']) && (isFunction(target['connect']) || isFunction(target['release']))
  );
}

function looksLikeIoredis(target: Record<string, unknown>): boolean {
  return isFunction(target['sendCommand']) && isFunction(target['getBuiltinCommands']);
}

/** Methods of an ioredis client that return something other than a promise of a reply. */
const IOREDIS_PLAIN = new Set(['multi', 'pipeline', 'duplicate', 'monitor']);

function ioredisMethods(target: Record<string, unknown>): Set<string> {
  const builtins = (target['getBuiltinCommands'] as () => string[]).call(target);
  const scripts = Object.keys((target['scriptsSet'] as Record<string, unknown> | undefined) ?? {});
  const methods = new Set<string>();
  for (const command of [...builtins, ...scripts, 'call', 'eval', 'evalsha', 'quit']) {
    if (!IOREDIS_PLAIN.has(command)) {
      methods.add(command);
      methods.add(`${command}Buffer`);
    }
  }
  return methods;
}

/**
 * Returns a stand-in for `target` whose asynchronous calls, made inside an
 * explored task, park the task once they settle so the scheduler decides
 * when the caller sees the result. Calls from outside a task (setup,
 * assertions) pass straight through.
 */
export function wrapForExecution<T extends object>(
  execution: CallInterceptor,
  target: T,
  options: WrapOptions = {},
): T {
  if ((typeof target !== 'object' && typeof target !== 'function') || target === null) {
    throw new InvalidArgumentError('target', 'an object or a function to intercept', target);
  }
  assertPlainObject('options', options);
  assertKnownOptions('options', options, WRAP_OPTIONS);
  if (options.methods !== undefined && !Array.isArray(options.methods)) {
    throw new InvalidArgumentError('options.methods', 'an array of method names', options.methods);
  }
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
    throw new InvalidArgumentError('options.name', 'a non-empty string', options.name);
  }
  if (
    options.resource !== undefined &&
    (typeof options.resource !== 'string' || options.resource === '')
  ) {
    throw new InvalidArgumentError('options.resource', 'a non-empty string', options.resource);
  }
  if (isFunction(target) && options.methods === undefined) {
    const name = options.name ?? (target.name === '' ? 'call' : target.name);
    const isFetch = target === globalThis.fetch || name === 'fetch';
    const describeCall = isFetch
      ? requestDescriber(name, options.resource)
      : functionDescriber(name, options.resource);
    const wrapped = (...args: unknown[]): Promise<unknown> => {
      const { label, footprint } = describeCall('', args);
      return execution.call(label, footprint, () => target(...args));
    };
    return wrapped as unknown as T;
  }
  const record = target as Record<string, unknown>;
  let shape: Shape;
  if (options.methods !== undefined) {
    const name = options.name ?? 'object';
    const footprint = declared(options.resource);
    shape = {
      name,
      methods: new Set(options.methods),
      describe: commandDescriber(name, () => footprint),
    };
  } else if (looksLikePg(record)) {
    const name = options.name ?? 'pg';
    shape = {
      name,
      methods: new Set(['query', 'connect']),
      describe: pgDescriber(name),
      wrapResult: (method, value) =>
        method === 'connect' && typeof value === 'object' && value !== null
          ? wrapForExecution(execution, value, { name })
          : value,
    };
  } else if (looksLikeIoredis(record)) {
    const name = options.name ?? 'redis';
    shape = {
      name,
      methods: ioredisMethods(record),
      describe: commandDescriber(name, redisFootprint),
      wrapSync: (method, value) =>
        (method === 'multi' || method === 'pipeline') && typeof value === 'object' && value !== null
          ? proxy(execution, value, {
              name: `${name}.${method}`,
              methods: new Set(['exec']),
              // Its commands were queued unseen: the batch may touch any key.
              describe: () => ({ label: `${name}.${method}.exec`, footprint: ANYTHING }),
            })
          : value,
    };
  } else {
    throw new InvalidArgumentError(
      'target',
      'a pg pool or client, an ioredis client, a function, or any object with { methods } naming its async methods',
      target,
    );
  }
  return proxy(execution, target, shape);
}

function proxy<T extends object>(execution: CallInterceptor, target: T, shape: Shape): T {
  const cache = new Map<PropertyKey, AnyFunction>();
  const stand: T = new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (!isFunction(value)) return value;
      const cached = cache.get(property);
      if (cached !== undefined) return cached;
      const method = String(property);
      let wrapped: AnyFunction;
      if (typeof property === 'string' && shape.methods.has(property)) {
        wrapped = (...args: unknown[]) => {
          const last = args[args.length - 1];
          const first = args[0] as { submit?: unknown } | undefined;
          // Callback style and pg submittables (cursors) return no promise: pass through.
          if (isFunction(last) || isFunction(first?.submit)) return value.apply(object, args);
          const { label, footprint } = shape.describe(method, args);
          const settled = execution.call(
            label,
            footprint,
            () => value.apply(object, args) as Promise<unknown>,
          );
          return shape.wrapResult === undefined
            ? settled
            : settled.then((result) => shape.wrapResult!(method, result));
        };
      } else {
        wrapped = (...args: unknown[]) => {
          const result = value.apply(object, args);
          if (result === object) return stand; // chained calls stay intercepted
          return shape.wrapSync === undefined ? result : shape.wrapSync(method, result);
        };
      }
      cache.set(property, wrapped);
      return wrapped;
    },
  });
  return stand;
}
