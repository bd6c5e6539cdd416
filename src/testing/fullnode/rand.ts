/** Small helpers over SeededRng for the simulator's fault draws. */
import type { SeededRng } from '../../util/rng.js';

export function randInt(rng: SeededRng, maxExclusive: number): number {
  return maxExclusive <= 1 ? 0 : rng.nextInt(maxExclusive);
}

export function chance(rng: SeededRng, p: number): boolean {
  return p > 0 && rng.nextFloat() < p;
}
