/** How often a child process checks whether the process that started it is still there. */
export const parentCheckIntervalMs = 500;

/**
 * Calls `onGone` once when this process's parent exits (we get re-parented), so test harnesses and the demo never
 * leave orphans behind. The timer does not keep the process alive.
 */
export function watchParent(onGone: () => void, intervalMs = parentCheckIntervalMs): void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, intervalMs);
  timer.unref();
}
