/**
 * LeaderGate.whileLeading keeps nothing per request once the request settled (issue 11's soak: every read and
 * write on the leader went through `Promise.race([p, lost])` with one `lost` promise pending for the whole term,
 * and each race left a reaction on it — about 0.5 KB per request, kept until the node stopped leading).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { LeaderContact } from '../../src/master/leader-contact.js';
import { LeaderGate } from '../../src/master/leader-gate.js';
import type { RaftNode } from '../../src/raft/node/index.js';

function leaderGate(): LeaderGate {
  const raft = { isLeader: true, leaderId: 'm1', peerAddress: () => undefined, status: () => ({ term: 3 }) } as unknown as RaftNode;
  const gate = new LeaderGate({ self: 'm1', raft: () => raft, contact: new LeaderContact(), electionTimeoutMs: 200, stopping: () => false });
  gate.onRoleChange('leader');
  return gate;
}

/** A full GC from inside the test process (no --expose-gc on the command line needed). */
function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

function heapUsedAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('LeaderGate.whileLeading', () => {
  it('retains nothing for settled requests while the node stays leader', async () => {
    const gate = leaderGate();
    const calls = 100_000;
    // Warm up (compiled code, promise machinery) before the baseline.
    for (let i = 0; i < 2_000; i++) await gate.whileLeading(Promise.resolve(i));
    const before = heapUsedAfterGc();
    for (let i = 0; i < calls; i++) {
      await gate.whileLeading(Promise.resolve(i));
      await gate.whileLeading(Promise.reject(new MooringError(ErrorCode.INVALID_ARGUMENT, 'no'))).catch(() => {});
    }
    const grown = heapUsedAfterGc() - before;
    console.log(JSON.stringify({ whileLeadingCalls: 2 * calls, heapGrownBytes: grown, bytesPerCall: +(grown / (2 * calls)).toFixed(1) }));
    expect(gate.waitingWhileLeading).toBe(0);
    // Before the fix: 456 bytes per settled call (91 MB here). A per-call leak of 16 bytes would exceed this bound.
    expect(grown).toBeLessThan(3 * 1024 * 1024);
  }, 60_000);

  it('rejects the calls in flight with NOT_LEADER (not definite) when leadership is lost, and only those', async () => {
    const gate = leaderGate();
    let resolveLate!: (v: number) => void;
    const late = gate.whileLeading(new Promise<number>((r) => (resolveLate = r)));
    let rejectLate!: (e: Error) => void;
    const lateFailing = gate.whileLeading(new Promise<number>((_, rej) => (rejectLate = rej)));
    expect(await gate.whileLeading(Promise.resolve(7))).toBe(7);
    expect(gate.waitingWhileLeading).toBe(2);
    gate.onRoleChange('follower');
    await expect(late).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER, definite: false });
    await expect(lateFailing).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER, definite: false });
    expect(gate.waitingWhileLeading).toBe(0);
    // Settling afterwards changes nothing (and a late rejection is handled, not unhandled).
    resolveLate(1);
    rejectLate(new Error('late'));
    // On a follower the promise passes through unchanged.
    expect(await gate.whileLeading(Promise.resolve(8))).toBe(8);
    // A NOT_LEADER from the request itself, on the leader, becomes the not-definite NOT_LEADER.
    gate.onRoleChange('leader');
    await expect(gate.whileLeading(Promise.reject(new MooringError(ErrorCode.NOT_LEADER, 'x')))).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER, definite: false });
    await expect(gate.whileLeading(Promise.reject(new MooringError(ErrorCode.TIMEOUT, 't')))).rejects.toMatchObject({ code: ErrorCode.TIMEOUT });
  });
});
