/** Resolves every `arrive()` once `parties` callers have arrived. */
export function createBarrier(parties: number): { arrive(): Promise<void> } {
  let arrived = 0;
  let release!: () => void;
  const open = new Promise<void>((resolve) => (release = resolve));
  return {
    arrive() {
      arrived++;
      if (arrived === parties) release();
      return open;
    },
  };
}
