/**
 * Backpressure on the leader (src/raft/node/proposals.ts): while its oldest unsettled proposal has waited longer than
 * maxProposalWaitMs, or maxPendingProposals are unsettled, a new proposal is refused at once with BUSY (definite,
 * retryAfterMs) and never reaches the log; once the queue drains, proposals are taken again. A real WAL whose saves
 * the test holds plays a leader stalled on its disk.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { KvStateMachine, encodeKvCommand } from '../../src/kvstore/kv-state-machine.js';
import { RaftNode } from '../../src/raft/node/index.js';
import { Wal } from '../../src/raft/wal/wal.js';
import type { PeerTransport } from '../../src/transport/types.js';
import { GatedLog } from '../helpers/gated-log.js';
import { waitFor } from '../helpers/in-process-masters.js';

const dirs: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const nullTransport: PeerTransport = {
  start: async () => {},
  send: () => true,
  onFrame: () => {},
  setPeer: () => {},
  removePeer: () => {},
  close: async () => {},
};

/** A one-voter cluster (it commits on its own save), leading, with saves held from now on. */
async function startLeader(limits: { maxProposalWaitMs?: number; maxPendingProposals?: number; proposalTimeoutMs?: number }): Promise<{ node: RaftNode; log: GatedLog; sm: KvStateMachine }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mooring-busy-'));
  dirs.push(dir);
  const wal = await Wal.open(path.join(dir, 'wal'));
  const sm = await KvStateMachine.open(path.join(dir, 'kv'));
  const log = new GatedLog(wal);
  const node = await RaftNode.start({
    id: 'a',
    dataDir: dir,
    storage: log,
    transport: nullTransport,
    stateMachine: sm,
    peers: [{ id: 'a', host: 'memory', port: 0 }],
    bootstrapVoters: ['a'],
    tickMs: 10,
    electionTimeoutTicks: 3,
    ...limits,
  });
  cleanups.push(async () => {
    log.hold = false;
    await log.release();
    await node.stop();
    await wal.close();
    await sm.close();
  });
  await waitFor(() => node.isLeader);
  await node.propose(put('warm-up')); // the leader's first-term entry is committed: from here only our saves count
  log.hold = true;
  return { node, log, sm };
}

const put = (key: string): Uint8Array => encodeKvCommand({ op: 'put', key, value: 'v' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('leader backpressure (BUSY)', () => {
  it('refuses new proposals with BUSY once the oldest has waited past maxProposalWaitMs; they never apply; the drained queue takes proposals again', async () => {
    const { node, log, sm } = await startLeader({ maxProposalWaitMs: 60 });
    const queued = [node.propose(put('q1')), node.propose(put('q2'))];
    await waitFor(() => log.held.length >= 1); // stalled on the disk
    // Below the limit the queue still takes proposals.
    await sleep(20);
    const taken = node.propose(put('q3'));
    await sleep(60); // the head has now waited > 60 ms
    const refused = await node.propose(put('refused')).then(() => null, (e: unknown) => e);
    expect(refused).toBeInstanceOf(MooringError);
    expect(refused).toMatchObject({ code: ErrorCode.BUSY, definite: true });
    const retryAfterMs = (refused as MooringError).retryAfterMs!;
    expect(retryAfterMs).toBeGreaterThanOrEqual(5);
    expect(retryAfterMs).toBeLessThanOrEqual(1_000);
    expect((refused as MooringError).message).toMatch(/maxProposalWaitMs 60/);
    expect(node.status().busyRefusals).toBe(1);
    // The leader's own paced duties (expiry, eviction) are not refused for the wait: they make room for the load.
    const housekeeping = node.propose(put('hk'), { housekeeping: true });
    // The disk comes back: everything queued applies, the refused proposal does not.
    log.hold = false;
    await log.release();
    await Promise.all([...queued, taken, housekeeping]);
    expect(await Promise.all(['q1', 'q2', 'q3', 'hk'].map((k) => sm.get(k)))).toEqual(['v', 'v', 'v', 'v']);
    expect(await sm.get('refused')).toBeUndefined();
    await expect(node.propose(put('after'))).resolves.toBeDefined();
    expect(await sm.get('after')).toBe('v');
  });

  it('maxPendingProposals: the next proposal past the count is refused with BUSY at once, whatever the wait', async () => {
    const { node, log } = await startLeader({ maxPendingProposals: 3, maxProposalWaitMs: 60_000 });
    const queued = [node.propose(put('a')), node.propose(put('b')), node.propose(put('c'))];
    await waitFor(() => log.held.length >= 1);
    await expect(node.propose(put('d'))).rejects.toMatchObject({ code: ErrorCode.BUSY, definite: true, message: expect.stringMatching(/maxPendingProposals 3/) });
    log.hold = false;
    await log.release();
    await Promise.all(queued);
    await expect(node.propose(put('e'))).resolves.toBeDefined();
  });

  it('proposalTimeoutMs: each proposal not applied in time fails TIMEOUT (outcome unknown) at its own deadline, oldest first; one that applies meanwhile does not', async () => {
    const { node, log, sm } = await startLeader({ proposalTimeoutMs: 150, maxProposalWaitMs: 60_000 });
    const failedAt = new Map<string, number>();
    const t0 = Date.now();
    const watch = (k: string): Promise<unknown> => node.propose(put(k)).then(
      () => { failedAt.set(k, -1); },
      (e: unknown) => { failedAt.set(k, Date.now() - t0); expect(e).toMatchObject({ code: ErrorCode.TIMEOUT, message: expect.stringMatching(/not applied within 150 ms/) }); },
    );
    const first = watch('t1');
    await waitFor(() => log.held.length >= 1); // stalled on the disk
    await sleep(80);
    const second = watch('t2');
    await first;
    expect(failedAt.get('t1')).toBeGreaterThanOrEqual(140);
    expect(failedAt.has('t2')).toBe(false); // its own deadline is ~80 ms later
    await second;
    expect(failedAt.get('t2')).toBeGreaterThanOrEqual(failedAt.get('t1')! + 60);
    // The disk comes back: a new proposal applies and is not failed by a timeout armed before it.
    log.hold = false;
    await log.release();
    await node.propose(put('t3'));
    await sleep(200);
    expect(await sm.get('t3')).toBe('v');
    await expect(node.propose(put('t4'))).resolves.toBeDefined();
  });
});
