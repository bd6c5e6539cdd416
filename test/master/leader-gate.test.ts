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

describe('LeaderGate parking on a follower', () => {
  it('a frame from the leader re-checks only the parked requests it can release, not those hedged away from it', async () => {
    let heard = false;
    let lookups = 0;
    const raft = {
      isLeader: false,
      leaderId: 'm2',
      coreTerm: 4,
      peerAddress: (id: string) => {
        lookups++;
        return id === 'm2' ? { host: '127.0.0.1', rpcPort: 9002 } : undefined;
      },
    } as unknown as RaftNode;
    const contact = { heardWithin: () => heard } as unknown as LeaderContact;
    const gate = new LeaderGate({ self: 'm1', raft: () => raft, contact, electionTimeoutMs: 200, stopping: () => false });
    // Waits only for the leader to be heard again: released by its next frame.
    const plain = gate.leaderOrPark(null);
    // Hedged away from the leader's endpoint: parked whether or not the leader is heard.
    const hedged = Array.from({ length: 50 }, () => gate.leaderOrPark('127.0.0.1:9002'));
    let hedgedSettled = 0;
    for (const p of hedged) p.catch(() => {}).finally(() => hedgedSettled++);
    heard = true;
    gate.wakeOnFrameFrom('m2');
    await expect(plain).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER, leaderHint: 'm2@127.0.0.1:9002' });
    expect(gate.hasParked).toBe(true);
    lookups = 0;
    for (let i = 0; i < 100; i++) gate.wakeOnFrameFrom('m2');
    // The leader's endpoint once per frame; none of the 50 parked requests re-checked (each check looks it up).
    expect(lookups).toBe(100);
    await new Promise((r) => setTimeout(r, 10));
    expect(hedgedSettled).toBe(0);
    // A leader change wakes everyone: still no live leader but m2, which they avoid, so they stay parked...
    gate.wake();
    await new Promise((r) => setTimeout(r, 10));
    expect(hedgedSettled).toBe(0);
    // ...until another member leads.
    (raft as unknown as { leaderId: string }).leaderId = 'm3';
    (raft as unknown as { peerAddress: (id: string) => unknown }).peerAddress = (id: string) => ({ host: '127.0.0.1', rpcPort: id === 'm2' ? 9002 : 9003 });
    gate.wake();
    const outcomes = await Promise.allSettled(hedged);
    expect(outcomes.every((o) => o.status === 'rejected' && (o.reason as MooringError).leaderHint === 'm3@127.0.0.1:9003')).toBe(true);
    expect(gate.hasParked).toBe(false);
  });
});
