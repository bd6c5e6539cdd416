/**
 * ReadBalancer: which master a client sends its next read to when every master may serve it (MasterClient
 * readFrom 'any'): the one with the lowest expected wait, "peak EWMA" (as Finagle and Linkerd balance): an
 * estimate of that master's latency times (its reads this client has in flight + 1).
 *
 * Why not only the fewest reads in flight: that treats a master that answers in 10 ms like one that answers in 1 ms
 * as long as both have the same number outstanding. The latency estimate follows the slower answers at once (a
 * sample above it replaces it) and the faster ones gradually (an exponential average over `decayMs`), so a nearby or
 * idle master takes more reads, a loaded or distant one fewer. A master that is not chosen gets no samples; its
 * estimate decays towards zero over `decayMs` and it is tried again, so a master that recovered is found. Masters
 * without a sample yet count as zero (tried first, shared by their reads in flight). Ties go round-robin.
 *
 * Time is the caller's (milliseconds, monotonic); nothing here reads a clock.
 */

/** How fast a latency estimate forgets: samples older than this weigh e⁻¹ (and an unsampled estimate decays so). */
export const readLatencyDecayMs = 1_000;
/**
 * Added to every estimate: masters without a (recent) sample still share reads by their number in flight instead
 * of one taking them all until its first answer.
 */
export const readLatencyFloorMs = 0.05;
/**
 * A failed read counts as at least this slow: a master that refuses fast (NOT_LEADER: no leader known to it, a read
 * it may not lease) must not look like the fastest one.
 */
export const readFailurePenaltyMs = 100;

interface Estimate {
  ms: number;
  atMs: number;
}

export class ReadBalancer {
  private readonly inFlight = new Map<string, number>();
  private readonly latency = new Map<string, Estimate>();
  private rotation = 0;

  constructor(private readonly decayMs = readLatencyDecayMs) {
    if (!(decayMs > 0)) throw new RangeError(`decayMs must be > 0, got ${decayMs}`);
  }

  /**
   * The endpoint to read from next (`avoid(e)`: one that just failed; chosen only when every one is avoided). Call
   * `started` with it, then `finished` when its answer (or failure) came.
   */
  pick(endpoints: readonly string[], nowMs: number, avoid: (e: string) => boolean): string {
    if (endpoints.length === 0) throw new RangeError('no endpoints to read from');
    let best = '';
    let bestCost = Infinity;
    let bestAvoided = true;
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[(this.rotation + i) % endpoints.length]!;
      const avoided = avoid(e);
      const cost = (this.estimate(e, nowMs) + readLatencyFloorMs) * ((this.inFlight.get(e) ?? 0) + 1);
      // Any endpoint not avoided beats an avoided one; among equals the lower cost, the first in rotation order.
      if ((bestAvoided && !avoided) || (avoided === bestAvoided && cost < bestCost)) {
        best = e;
        bestCost = cost;
        bestAvoided = avoided;
      }
    }
    this.rotation = (this.rotation + 1) % endpoints.length;
    return best;
  }

  started(e: string): void {
    this.inFlight.set(e, (this.inFlight.get(e) ?? 0) + 1);
  }

  /** The read sent to `e` ended after `latencyMs`; a failure counts as at least readFailurePenaltyMs. */
  finished(e: string, latencyMs: number, nowMs: number, failed = false): void {
    const n = (this.inFlight.get(e) ?? 1) - 1;
    if (n > 0) this.inFlight.set(e, n);
    else this.inFlight.delete(e);
    const sample = Math.max(0, latencyMs, failed ? readFailurePenaltyMs : 0);
    const cur = this.latency.get(e);
    if (cur === undefined) {
      this.latency.set(e, { ms: sample, atMs: nowMs });
      return;
    }
    const w = Math.exp(-Math.max(0, nowMs - cur.atMs) / this.decayMs);
    cur.ms = sample > cur.ms ? sample : cur.ms * w + sample * (1 - w);
    cur.atMs = nowMs;
  }

  /** The current latency estimate of `e` in ms (0 before its first sample), decayed by the time since its last. */
  estimate(e: string, nowMs: number): number {
    const cur = this.latency.get(e);
    if (cur === undefined) return 0;
    return cur.ms * Math.exp(-Math.max(0, nowMs - cur.atMs) / this.decayMs);
  }

  /** Reads this client has in flight at `e`. */
  pending(e: string): number {
    return this.inFlight.get(e) ?? 0;
  }
}
