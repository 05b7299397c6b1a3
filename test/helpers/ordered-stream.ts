import type { Message } from '../../packages/raceguard/src/messaging/message.js';

/** keys × perKey messages; every 10th key's neighbours swapped, every 20th message published twice. */
export function streamOf(
  keys: number,
  perKey: number,
): { messages: Message[]; expected: Map<string, number> } {
  const expected = new Map<string, number>();
  const perKeyLists: Message[][] = [];
  for (let k = 0; k < keys; k++) {
    const key = `order-${k}`;
    expected.set(key, perKey);
    const list: Message[] = [];
    for (let seq = 1; seq <= perKey; seq++) {
      list.push({
        id: `${key}:${seq}`,
        key,
        seq,
        type: 'event',
        payload: { key, seq },
        headers: {},
      });
    }
    // Out of order as a broker can deliver after a requeue: swap neighbours.
    for (let i = k % 3; i + 1 < list.length; i += 7) {
      [list[i], list[i + 1]] = [list[i + 1] as Message, list[i] as Message];
    }
    perKeyLists.push(list);
  }
  const messages: Message[] = [];
  for (let i = 0; i < perKey; i++) {
    for (const list of perKeyLists) {
      const m = list[i] as Message;
      messages.push(m);
      if ((i * keys + m.seq) % 20 === 0) messages.push(m); // a duplicate publish
    }
  }
  return { messages, expected };
}
