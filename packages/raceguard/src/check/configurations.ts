/**
 * The linearizability search's memory of configurations seen: a set of
 * (linearized operations, model state) pairs. It is the one structure of
 * the search that grows, and its hot path: looked up after every step the
 * model accepts. So it is an open hash table over typed arrays (the bit sets
 * of every configuration side by side in one buffer, chained by index), not
 * a Map of small objects: no allocation per lookup or per entry, and a size
 * in bytes known at every moment for the memory budget.
 */
export class Configurations<S> {
  private readonly words: number;
  private readonly equal: (a: S, b: S) => boolean;
  /** Per bucket, the first configuration's index, or -1. */
  private buckets: Int32Array;
  private mask: number;
  /** Per configuration: its hash, the next in its bucket, its bits, its state. */
  private hashes: Uint32Array;
  private next: Int32Array;
  private bits: Uint32Array;
  private readonly states: S[] = [];
  private count = 0;

  constructor(
    words: number,
    equal: (a: S, b: S) => boolean,
    private readonly limitBytes: number,
  ) {
    this.words = words;
    this.equal = equal;
    this.buckets = new Int32Array(1024).fill(-1);
    this.mask = 1023;
    this.hashes = new Uint32Array(512);
    this.next = new Int32Array(512);
    this.bits = new Uint32Array(512 * words);
  }

  /** Bytes held (typed arrays and the states' slots; the states themselves are the model's). */
  get bytes(): number {
    return (
      this.buckets.byteLength +
      this.hashes.byteLength +
      this.next.byteLength +
      this.bits.byteLength +
      this.states.length * 8
    );
  }

  /**
   * Adds (set, state) unless it is there: `added`, `seen`, or `full` when
   * making room would take the table past its limit in bytes. `hash` is the
   * set's hash; equal sets must have equal hashes.
   */
  add(hash: number, set: Uint32Array, state: S): 'added' | 'seen' | 'full' {
    const words = this.words;
    for (let at = this.buckets[hash & this.mask]!; at !== -1; at = this.next[at]!) {
      if (this.hashes[at] !== hash) continue;
      let same = true;
      const base = at * words;
      for (let word = 0; word < words; word++) {
        if (this.bits[base + word] !== set[word]) {
          same = false;
          break;
        }
      }
      if (same && this.equal(this.states[at]!, state)) return 'seen';
    }
    if (this.count === this.hashes.length) {
      // Growing doubles the arrays and holds old and new at once for a moment.
      if (this.bytes * 3 > this.limitBytes) return 'full';
      this.grow();
    }
    const at = this.count++;
    this.hashes[at] = hash;
    this.bits.set(set, at * words);
    this.states.push(state);
    if (this.count * 2 > this.buckets.length) this.rehash();
    else {
      this.next[at] = this.buckets[hash & this.mask]!;
      this.buckets[hash & this.mask] = at;
    }
    return 'added';
  }

  private grow(): void {
    const capacity = this.hashes.length * 2;
    const hashes = new Uint32Array(capacity);
    hashes.set(this.hashes);
    this.hashes = hashes;
    const next = new Int32Array(capacity);
    next.set(this.next);
    this.next = next;
    const bits = new Uint32Array(capacity * this.words);
    bits.set(this.bits);
    this.bits = bits;
  }

  /** Doubles the buckets and chains every configuration again (the newest included). */
  private rehash(): void {
    this.buckets = new Int32Array(this.buckets.length * 2).fill(-1);
    this.mask = this.buckets.length - 1;
    for (let at = 0; at < this.count; at++) {
      const bucket = this.hashes[at]! & this.mask;
      this.next[at] = this.buckets[bucket]!;
      this.buckets[bucket] = at;
    }
  }
}
