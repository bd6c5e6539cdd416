/**
 * The full-node simulator's only source of time and order: a virtual clock (milliseconds) and one event queue
 * ordered by (due time, insertion order). Every timer, setImmediate, message delivery and disk completion of
 * every simulated node is an event here, so a seed fixes the whole interleaving. Between two events the real
 * microtask queue is drained (promise continuations of the code under test), which is deterministic because no
 * real I/O or real timer is involved.
 *
 * Each node sees the virtual time through its own NodeClock: it can be paused (its events wait, its monotonic
 * clock goes on, as with SIGSTOP) and drift (its clock runs at `rate` × real time).
 */
import type { Clock, Timer } from '../../raft/node/clock.js';

interface SimEvent {
  at: number;
  seq: number;
  fn: () => void;
}

/** A binary heap on (at, seq). */
class EventHeap {
  private readonly a: SimEvent[] = [];
  get size(): number {
    return this.a.length;
  }
  peek(): SimEvent | undefined {
    return this.a[0];
  }
  push(e: SimEvent): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(a[p]!, a[i]!)) break;
      [a[p], a[i]] = [a[i]!, a[p]!];
      i = p;
    }
  }
  pop(): SimEvent | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && less(a[l]!, a[m]!)) m = l;
        if (r < a.length && less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

function less(x: SimEvent, y: SimEvent): boolean {
  return x.at < y.at || (x.at === y.at && x.seq < y.seq);
}

// Between two events every promise continuation of the code under test must settle. A nextTick runs only once
// the microtask queue is empty, which is all that settling needs (nothing under simulation does real I/O or
// uses a real timer), at a fraction of the cost of a full event-loop turn (setImmediate). Every
// YIELD_EVERY_EVENTS events the real loop still gets a turn, so a long schedule never starves the host
// (a test runner's timers and worker messages).
const YIELD_EVERY_EVENTS = 256;
const settle = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class SimScheduler {
  now = 0;
  events = 0;
  private seq = 0;
  private readonly heap = new EventHeap();

  at(time: number, fn: () => void): void {
    this.heap.push({ at: Math.max(time, this.now), seq: this.seq++, fn });
  }

  after(ms: number, fn: () => void): void {
    this.at(this.now + Math.max(0, ms), fn);
  }

  /** Runs events until virtual time `until` (inclusive) or until `stop()` holds between two events. */
  async runUntil(until: number, stop?: () => boolean): Promise<void> {
    await yieldToLoop();
    if (stop?.()) return;
    for (;;) {
      const next = this.heap.peek();
      if (next === undefined || next.at > until) break;
      this.heap.pop();
      this.now = next.at;
      this.events++;
      next.fn();
      await (this.events % YIELD_EVERY_EVENTS === 0 ? yieldToLoop() : settle());
      if (stop?.()) return;
    }
    this.now = Math.max(this.now, until);
  }
}

/**
 * One node's view of time. `incarnation` changes at every crash: timers of a dead incarnation never fire.
 * While paused, due callbacks are held and run at resume, in order.
 */
export class NodeClock implements Clock {
  paused = false;
  /** Local clock speed relative to virtual time (1 = exact). */
  rate = 1;
  private readonly held: Array<() => void> = [];
  private incarnation = 0;
  /** Local time at virtual time `anchorAt` (the clock is piecewise linear when `rate` changes). */
  private anchorLocal = 0;
  private anchorAt = 0;

  constructor(private readonly sched: SimScheduler, offsetMs: number) {
    this.anchorLocal = offsetMs;
  }

  now(): number {
    return this.anchorLocal + (this.sched.now - this.anchorAt) * this.rate;
  }

  setRate(rate: number): void {
    this.anchorLocal = this.now();
    this.anchorAt = this.sched.now;
    this.rate = rate;
  }

  /** Forgets every timer (the process died). */
  kill(): void {
    this.incarnation++;
    this.held.length = 0;
    this.paused = false;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    for (const fn of this.held.splice(0)) this.sched.after(0, fn);
  }

  /** Runs `fn` for this incarnation after `localMs` of this node's time; held while paused. */
  schedule(localMs: number, fn: () => void): void {
    const inc = this.incarnation;
    this.sched.after(localMs / this.rate, () => {
      if (inc !== this.incarnation) return;
      if (this.paused) this.held.push(fn);
      else fn();
    });
  }

  /** A callback that runs only while this incarnation lives (and is held while paused). */
  guard(fn: () => void): () => void {
    const inc = this.incarnation;
    return () => {
      if (inc !== this.incarnation) return;
      if (this.paused) this.held.push(fn);
      else fn();
    };
  }

  setTimeout(fn: () => void, ms: number): Timer {
    let gen = 0;
    let cancelled = false;
    const arm = (): void => {
      const mine = ++gen;
      this.schedule(ms, () => {
        if (!cancelled && mine === gen) fn();
      });
    };
    arm();
    return { cancel: () => { cancelled = true; }, refresh: () => { if (!cancelled) arm(); } };
  }

  setInterval(fn: () => void, ms: number): Timer {
    let cancelled = false;
    const step = (): void => {
      if (cancelled) return;
      fn();
      if (!cancelled) this.schedule(ms, step);
    };
    this.schedule(ms, step);
    return { cancel: () => { cancelled = true; }, refresh: () => {} };
  }

  setImmediate(fn: () => void): void {
    this.schedule(0, fn);
  }
}
