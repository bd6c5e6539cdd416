/**
 * fast-check defaults for every property test. A property runs synchronously, so vitest's testTimeout cannot stop
 * it: a failing case whose shrinking is slow once held a CI run for 40 minutes. After propertyTimeLimitMs the run
 * stops and fails, printing the seed, the path and the counterexample shrunk so far (replay: pass seed and path
 * to fc.assert). Properties take seconds here; a test that needs longer sets its own interruptAfterTimeLimit.
 */
import fc from 'fast-check';

const propertyTimeLimitMs = 3 * 60_000;

fc.configureGlobal({ interruptAfterTimeLimit: propertyTimeLimitMs, markInterruptAsFailure: true });
