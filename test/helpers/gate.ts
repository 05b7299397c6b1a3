/** A point a task waits at until the test opens it; `arrived` says the task got there. */
export function gate() {
  let open: () => void = () => undefined;
  let reached: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const arrived = new Promise<void>((resolve) => (reached = resolve));
  return {
    open,
    arrived,
    async wait() {
      reached();
      await opened;
    },
  };
}
