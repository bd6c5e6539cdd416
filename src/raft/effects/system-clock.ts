/** The production Clock: the process's monotonic clock (performance.now) and Node's timers. */
import type { Clock, Timer } from '../node/clock.js';

function wrap(t: NodeJS.Timeout, clear: (t: NodeJS.Timeout) => void): Timer {
  return { cancel: () => clear(t), refresh: () => { t.refresh(); } };
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => wrap(setTimeout(fn, ms), clearTimeout),
  setInterval: (fn, ms) => wrap(setInterval(fn, ms), clearInterval),
  setImmediate: (fn) => { setImmediate(fn); },
};

/**
 * The production clock for read leases: epoch milliseconds that never step — the wall clock when the process started
 * plus the monotonic time since (performance.timeOrigin + performance.now()). Every LeaseTable caller passes its
 * now(); only durations travel between processes. Date.now() steps with NTP or a resumed VM: a forward step of Δ on
 * the leader ended every read lease Δ early, so a remove or an eviction could be admitted while a reader still counted
 * on its lease (test/master/lease-clock-step.test.ts).
 */
const timeOrigin = performance.timeOrigin; // a getter: read once, it never changes
export const leaseClock: Clock = { ...systemClock, now: () => timeOrigin + performance.now() };
