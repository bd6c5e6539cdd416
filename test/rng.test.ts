import { describe, expect, it } from 'vitest';
import { SeededRng } from '../src/util/rng.js';

describe('SeededRng', () => {
  it('replays the same sequence for the same seed and differs across seeds', () => {
    const a = new SeededRng(42), b = new SeededRng(42), c = new SeededRng(43);
    const sa = Array.from({ length: 8 }, () => a.nextUint32());
    const sb = Array.from({ length: 8 }, () => b.nextUint32());
    const sc = Array.from({ length: 8 }, () => c.nextUint32());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
  });

  it('nextInt stays in range and covers it', () => {
    const r = new SeededRng(7);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const x = r.nextInt(10);
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(10);
      seen.add(x);
    }
    expect(seen.size).toBe(10);
    expect(() => r.nextInt(0)).toThrow(RangeError);
  });
});
