/**
 * The checker of per-key ordered, exactly-once processing: given the
 * effects in the order they were applied, and how many messages each key
 * had, report every message applied out of order, twice, or never.
 */
export interface Applied {
  readonly key: string;
  readonly seq: number;
}

export interface HistoryVerdict {
  readonly outOfOrder: number;
  readonly duplicates: number;
  readonly missing: number;
  /** The first few violations, for the assertion message. */
  readonly examples: string[];
}

export function checkHistory(
  applied: readonly Applied[],
  expected: ReadonlyMap<string, number>,
): HistoryVerdict {
  const last = new Map<string, number>();
  const seen = new Set<string>();
  let outOfOrder = 0;
  let duplicates = 0;
  const examples: string[] = [];
  for (const { key, seq } of applied) {
    const id = `${key}#${seq}`;
    if (seen.has(id)) {
      duplicates++;
      if (examples.length < 5) examples.push(`${id} applied twice`);
      continue;
    }
    seen.add(id);
    const previous = last.get(key) ?? 0;
    if (seq !== previous + 1) {
      outOfOrder++;
      if (examples.length < 5) examples.push(`${id} applied after ${key}#${previous}`);
    }
    last.set(key, Math.max(previous, seq));
  }
  let missing = 0;
  for (const [key, count] of expected) {
    for (let seq = 1; seq <= count; seq++) {
      if (!seen.has(`${key}#${seq}`)) {
        missing++;
        if (examples.length < 5) examples.push(`${key}#${seq} never applied`);
      }
    }
  }
  return { outOfOrder, duplicates, missing, examples };
}

export const clean = (v: HistoryVerdict) =>
  v.outOfOrder === 0 && v.duplicates === 0 && v.missing === 0;
