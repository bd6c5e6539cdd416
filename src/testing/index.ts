// Public surface of `mooring/testing`: the deterministic simulator, fault schedules and the linearizability checker.
export { SeededRng } from '../util/rng.js';
