/**
 * Vector clocks (Fidge 1988, Mattern 1989): one counter per node. Unlike a
 * Lamport or hybrid clock they tell "happened before" from "concurrent":
 * two versions of a shopping cart edited in two places are concurrent, and
 * both must be kept (siblings) rather than one silently dropped.
 *
 * Vectors are immutable values. Node ids are 1 to 64 characters of
 * `A-Z a-z 0-9 _ . -`, so the compact form (`a=3,b=5`) is unambiguous.
 *
 * Pruning: a vector grows by one entry per node that ever wrote. Dropping a
 * retired node's entry (`without`) is safe only once every vector that
 * will ever be compared again has seen that node's last event (its entry
 * is at its final value everywhere); prune earlier and an old version can
 * look concurrent with, or newer than, its successor. Riak prunes by age
 * and size and accepts that risk; here it is an explicit call.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { ClockFormatError, ClockOverflowError } from './errors.js';

/** How two vectors relate. */
export type VectorOrder = 'before' | 'after' | 'equal' | 'concurrent';

const NODE = /^[A-Za-z0-9_.-]{1,64}$/;
const ENTRY = /^([A-Za-z0-9_.-]{1,64})=([1-9][0-9]{0,15})$/;

function assertNode(node: string): void {
  if (typeof node !== 'string' || !NODE.test(node)) {
    throw new InvalidArgumentError('node', '1 to 64 characters of A-Z a-z 0-9 _ . -', node);
  }
}

/**
 * A vector clock.
 *
 * @example
 * ```ts
 * let cart = VectorClock.empty().increment('web-1');
 * const other = cart.increment('web-2');
 * cart = cart.increment('web-1');
 * cart.compare(other); // 'concurrent': keep both carts
 * const merged = cart.merge(other).increment('web-1');
 * ```
 */
export class VectorClock {
  readonly #entries: ReadonlyMap<string, number>;

  private constructor(entries: ReadonlyMap<string, number>) {
    this.#entries = entries;
  }

  /** The vector before any event. */
  static empty(): VectorClock {
    return new VectorClock(new Map());
  }

  /** A vector from `{ node: counter }` (zero counters are left out). */
  static from(entries: Readonly<Record<string, number>>): VectorClock {
    const map = new Map<string, number>();
    for (const [node, counter] of Object.entries(entries)) {
      assertNode(node);
      if (!Number.isSafeInteger(counter) || counter < 0) {
        throw new InvalidArgumentError(`entries.${node}`, 'a non-negative safe integer', counter);
      }
      if (counter > 0) map.set(node, counter);
    }
    return new VectorClock(map);
  }

  /** Read {@link encode}'s form; a `ClockFormatError` for anything else. */
  static decode(text: string): VectorClock {
    if (typeof text !== 'string' || text.length > 64 * 1024) {
      throw new ClockFormatError('a vector clock', String(text));
    }
    const map = new Map<string, number>();
    if (text === '') return new VectorClock(map);
    for (const part of text.split(',')) {
      const match = ENTRY.exec(part);
      const counter = Number(match?.[2]);
      if (match === null || !Number.isSafeInteger(counter) || map.has(match[1] as string)) {
        throw new ClockFormatError('a vector clock', text);
      }
      map.set(match[1] as string, counter);
    }
    return new VectorClock(map);
  }

  /** `node`'s counter (0 if it never wrote). */
  get(node: string): number {
    return this.#entries.get(node) ?? 0;
  }

  /** The nodes with an entry. */
  get nodes(): string[] {
    return [...this.#entries.keys()].sort();
  }

  /** A new event on `node`. */
  increment(node: string): VectorClock {
    assertNode(node);
    const counter = this.get(node);
    if (counter >= Number.MAX_SAFE_INTEGER) {
      throw new ClockOverflowError(`the counter of ${node}`, Number.MAX_SAFE_INTEGER);
    }
    const map = new Map(this.#entries);
    map.set(node, counter + 1);
    return new VectorClock(map);
  }

  /** The least vector after both (entry-wise maximum): commutative, associative, idempotent. */
  merge(other: VectorClock): VectorClock {
    const map = new Map(this.#entries);
    for (const [node, counter] of other.#entries) {
      if (counter > (map.get(node) ?? 0)) map.set(node, counter);
    }
    return new VectorClock(map);
  }

  /** How this vector relates to `other`. */
  compare(other: VectorClock): VectorOrder {
    let less = false;
    let greater = false;
    for (const node of new Set([...this.#entries.keys(), ...other.#entries.keys()])) {
      const a = this.get(node);
      const b = other.get(node);
      if (a < b) less = true;
      else if (a > b) greater = true;
      if (less && greater) return 'concurrent';
    }
    if (less) return 'before';
    if (greater) return 'after';
    return 'equal';
  }

  /** This vector without the entries of `retired` nodes (read the module's note on pruning first). */
  without(retired: Iterable<string>): VectorClock {
    const map = new Map(this.#entries);
    for (const node of retired) map.delete(node);
    return new VectorClock(map);
  }

  /** The compact form: `node=counter` pairs sorted by node, comma-separated. */
  encode(): string {
    return this.nodes.map((node) => `${node}=${this.get(node)}`).join(',');
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.nodes.map((node) => [node, this.get(node)]));
  }

  toString(): string {
    return this.encode();
  }
}
