// How a MasterClient call's retry policy is resolved (callPolicy; the client resolves its own once and reuses it for
// calls without options), and resolvePolicy's identity for a policy that is already whole.
import { describe, expect, it } from 'vitest';
import { callPolicy } from '../../src/master/client.js';
import { defaultRetryPolicy, resolvePolicy } from '../../src/client/leader-client.js';

describe('call retry policy', () => {
  it('without options anywhere: the defaults', () => {
    expect(callPolicy({}, {})).toEqual(defaultRetryPolicy);
  });

  it('the attempt timeout: the call\'s timeoutMs, else the client\'s requestTimeoutMs, else the policy\'s', () => {
    expect(callPolicy({ requestTimeoutMs: 250 }, {}).attemptTimeoutMs).toBe(250);
    expect(callPolicy({ requestTimeoutMs: 250, retry: { attemptTimeoutMs: 700 } }, {}).attemptTimeoutMs).toBe(250);
    expect(callPolicy({ retry: { attemptTimeoutMs: 700 } }, {}).attemptTimeoutMs).toBe(700);
    expect(callPolicy({ requestTimeoutMs: 250 }, { timeoutMs: 2_000 }).attemptTimeoutMs).toBe(2_000);
  });

  it('the deadline covers at least one attempt', () => {
    expect(callPolicy({ retry: { deadlineMs: 100 }, requestTimeoutMs: 250 }, {}).deadlineMs).toBe(250);
    expect(callPolicy({ retry: { deadlineMs: 100 } }, { timeoutMs: 9_000 }).deadlineMs).toBe(9_000);
    expect(callPolicy({ retry: { deadlineMs: 8_000 } }, { timeoutMs: 300 }).deadlineMs).toBe(8_000);
  });

  it('the call\'s fields over the client\'s over the defaults, field by field', () => {
    const p = callPolicy({ retry: { maxAttempts: 10, initialBackoffMs: 50, hedgeAfterMs: 40 } }, { retry: { maxAttempts: 2 } });
    expect(p).toEqual({ ...defaultRetryPolicy, maxAttempts: 2, initialBackoffMs: 50, hedgeAfterMs: 40 });
    // A field the call leaves undefined (even explicitly) is the client's.
    expect(callPolicy({ retry: { maxAttempts: 10 } }, { retry: { maxAttempts: undefined } }).maxAttempts).toBe(10);
  });

  it('resolvePolicy uses a whole policy as it is and fills a partial one without changing it', () => {
    const whole = callPolicy({ requestTimeoutMs: 250 }, {});
    expect(resolvePolicy(whole)).toBe(whole);
    const partial = { deadlineMs: 1_234 };
    const r = resolvePolicy(partial);
    expect(r).not.toBe(partial);
    expect(r).toEqual({ ...defaultRetryPolicy, deadlineMs: 1_234 });
    expect(partial).toEqual({ deadlineMs: 1_234 });
  });
});
