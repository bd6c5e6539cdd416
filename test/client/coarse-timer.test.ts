/**
 * CoarseTimer (src/client/coarse-timer.ts): the hedge checks of a client's calls share one interval. A race yields
 * the first settled value, null once its time passed (at most coarseTimerResolutionMs late), and a rejection as a
 * rejection; the interval stops when nothing waits.
 */
import { describe, expect, it } from 'vitest';
import { CoarseTimer, coarseTimerResolutionMs } from '../../src/client/coarse-timer.js';

const later = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));

describe('CoarseTimer', () => {
  it('yields the first value to arrive, or null once the time passed, and stops its interval when idle', async () => {
    const t = new CoarseTimer();
    expect(await t.race(later(5, 'a'), 200)).toBe('a');
    expect(await t.race([later(80, 'slow'), later(10, 'fast')], 200)).toBe('fast');
    const started = Date.now();
    expect(await t.race(new Promise<string>(() => {}), 30)).toBeNull();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(29);
    expect(took).toBeLessThan(30 + coarseTimerResolutionMs + 50); // generous for a loaded machine
    expect(t.pending).toBe(0);
    t.close();
  });

  it('passes a rejection on, and close() releases every waiter with null', async () => {
    const t = new CoarseTimer();
    await expect(t.race(Promise.reject(new Error('boom')), 100)).rejects.toThrow('boom');
    const waiting = t.race(new Promise<string>(() => {}), 60_000);
    expect(t.pending).toBe(1);
    t.close();
    expect(await waiting).toBeNull();
    expect(t.pending).toBe(0);
  });
});
