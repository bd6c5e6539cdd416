/**
 * CoarseTimer: the "has this call been silent too long?" checks of a client's in-flight calls, from one interval per
 * client pool instead of one setTimeout + clearTimeout + Promise.race per call. Those, with the closures around
 * them, made a client call ~3× as expensive in CPU as the RPC itself. A check fires up to
 * `coarseTimerResolutionMs` late, which is noise next to a hedge delay of ~100 ms.
 */

/** How late a check may fire. */
export const coarseTimerResolutionMs = 5;

interface Wait {
  due: number;
  fire(): void;
}

export class CoarseTimer {
  private readonly waits = new Set<Wait>();
  private interval: NodeJS.Timeout | null = null;

  /**
   * Like Promise.race over `promises` and a timer that yields null after `ms`: the first of them to settle (a
   * rejection rejects), or null.
   */
  race<T>(promises: ReadonlyArray<Promise<T>> | Promise<T>, ms: number): Promise<T | null> {
    return new Promise<T | null>((resolve, reject) => {
      const w: Wait = { due: Date.now() + ms, fire: () => resolve(null) };
      const done = (v: T): void => {
        this.waits.delete(w);
        resolve(v);
      };
      const failed = (e: unknown): void => {
        this.waits.delete(w);
        reject(e);
      };
      if (promises instanceof Promise) promises.then(done, failed);
      else for (const p of promises) p.then(done, failed);
      this.waits.add(w);
      if (this.interval === null) {
        this.interval = setInterval(() => this.check(), coarseTimerResolutionMs);
        this.interval.unref();
      }
    });
  }

  /** Checks still waiting (for tests and metrics). */
  get pending(): number {
    return this.waits.size;
  }

  close(): void {
    if (this.interval !== null) clearInterval(this.interval);
    this.interval = null;
    for (const w of this.waits) w.fire();
    this.waits.clear();
  }

  private check(): void {
    const now = Date.now();
    for (const w of this.waits) {
      if (w.due > now) continue;
      this.waits.delete(w);
      w.fire();
    }
    if (this.waits.size === 0 && this.interval !== null) {
      clearInterval(this.interval);
      this.interval = null;
    }
  }
}
