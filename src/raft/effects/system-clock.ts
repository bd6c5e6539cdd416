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
 * The production clock with the wall clock's now() (Date.now): for read leases, whose table counts in wall-clock
 * milliseconds (every LeaseTable caller passes Date.now(); only durations travel between processes).
 */
export const wallClock: Clock = { ...systemClock, now: () => Date.now() };
