/**
 * Time as the driver sees it: a monotonic clock and timers. Production uses the process's clock
 * (src/raft/effects/system-clock.ts); the simulator supplies a virtual one it can pause and skew.
 */
export interface Timer {
  /** Stops the timer; calling it twice is harmless. */
  cancel(): void;
  /** Restarts a one-shot timer's full delay from now. */
  refresh(): void;
}

export interface Clock {
  /** Monotonic milliseconds (never goes back; unrelated to the wall clock). */
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  setInterval(fn: () => void, ms: number): Timer;
  /**
   * Runs `fn` after the I/O already pending has been delivered (Node's setImmediate): input that arrived meanwhile
   * joins the next Ready round, which is what batches many proposals into one fsync.
   */
  setImmediate(fn: () => void): void;
}
