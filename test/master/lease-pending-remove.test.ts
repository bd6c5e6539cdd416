/**
 * A read of a key whose remove is admitted but not yet applied (the simulator's lease race: seeds 326, 377, 978,
 * 1248). The read must neither lease the key nor answer the old replicas while the remove is in flight; it waits
 * and answers the state after the remove (OBJECT_NOT_FOUND), on the leader and through a follower.
 * Three in-process masters on real sockets and LevelDB. The remove is held uncommitted by filtering the leader's
 * appends out of its peer transport (heartbeats still flow: it keeps leading and confirms reads).
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { supportedStateVersion } from '../../src/statemachine/state-version.js';
import { MasterClient } from '../../src/master/client.js';
import type { MasterNode } from '../../src/master/master-node.js';
import { RpcClient } from '../../src/transport/rpc.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();

type Outcome = { ok: true; v: unknown } | { ok: false; code: string | undefined };
const outcome = (p: Promise<unknown>): Promise<Outcome> => p.then((v) => ({ ok: true as const, v }), (e: { code?: string }) => ({ ok: false as const, code: e.code }));

function raw(node: MasterNode, id: string): RpcClient {
  const c = new RpcClient({ host: '127.0.0.1', port: node.ports.rpc, clusterId: 'mooring', nodeId: id });
  cleanup.push(() => c.close());
  return c;
}

/** A settled 3-master cluster with object `k` written and no lease on it; `hold(true)` keeps the leader's appends back. */
async function setup(): Promise<{ nodes: MasterNode[]; leader: MasterNode; follower: MasterNode; c: MasterClient; hold: (on: boolean) => void }> {
  // Slow elections: no spurious leader change on a loaded machine while appends are held.
  const nodes = await startMasters(cleanup, { prefix: 'mooring-pendrm-', config: { raft: { tickMs: 50 }, leaseTtlMs: 200 } });
  await waitFor(() => nodes.some((n) => n.isLeader) && nodes.every((n) => n.leaderId !== null && n.leaderId === nodes[0]!.leaderId));
  const leader = nodes.find((n) => n.isLeader)!;
  const follower = nodes.find((n) => !n.isLeader)!;
  const c = new MasterClient({ endpoints: [`127.0.0.1:${leader.ports.rpc}`], readFrom: 'leader' });
  cleanup.push(() => c.close());
  await c.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z' });
  await c.putStart('k', 4096);
  await c.putEnd('k');
  await waitFor(() => follower.raftNode.appliedIndex >= leader.raftNode.appliedIndex);
  await new Promise((r) => setTimeout(r, 300)); // past any lease on k
  const transport = (leader as unknown as { transport: { send(to: string, frame: unknown): boolean } }).transport;
  const send = transport.send.bind(transport);
  let holding = false;
  transport.send = (to, frame) => {
    const f = frame as { k?: string; m?: Array<{ type: string }> };
    if (!holding || f.k !== 'r' || !Array.isArray(f.m)) return send(to, frame);
    const rest = f.m.filter((m) => m.type !== 'app');
    if (rest.length > 0) send(to, { ...f, m: rest });
    return rest.length === f.m.length; // unreachable: the leader sends them again later
  };
  return { nodes, leader, follower, c, hold: (on) => { holding = on; } };
}

/** Proposes a remove of `k` on the leader and resolves once it is in the leader's log, uncommitted. */
async function removeInFlight(leader: MasterNode): Promise<{ removed: Promise<Outcome>; answered: () => boolean }> {
  const removed = outcome(raw(leader, 'remover').call('remove', { key: 'k', force: false, clientId: 'rm-client', seq: 1 }, { timeoutMs: 15_000 }));
  let done = false;
  void removed.then(() => { done = true; });
  const st = () => leader.raftNode.status();
  await waitFor(() => st().lastIndex > st().commit || done);
  expect(done).toBe(false); // admitted (no lease on k) and in flight
  return { removed, answered: () => done };
}

/** A write right after the appends are let through: the leader sends the held entries at once, not at its next probe. */
async function kick(c: MasterClient): Promise<void> {
  await c.mountSegment({ id: 's2', name: 's2', base: 0x20000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9002', zone: 'z' });
}

describe('a read of a key with a remove in flight', () => {
  it('on the leader: waits for the remove, grants no lease meanwhile, then answers OBJECT_NOT_FOUND', async () => {
    const { leader, c, hold } = await setup();
    hold(true);
    const { removed, answered } = await removeInFlight(leader);
    let readDone = false;
    const read = outcome(c.getReplicaList('k'));
    void read.then(() => { readDone = true; });
    await new Promise((r) => setTimeout(r, 300));
    // Without the fix the leader leased k and answered its replicas here, inside the remove's window.
    expect(answered()).toBe(false);
    expect(readDone).toBe(false);
    const leases = (leader as unknown as { leases: { isLeased(k: string, now: number): boolean } }).leases;
    expect(leases.isLeased('k', Date.now())).toBe(false);
    hold(false);
    await kick(c);
    expect(await removed).toMatchObject({ ok: true });
    expect(await read).toEqual({ ok: false, code: ErrorCode.OBJECT_NOT_FOUND });
  });

  it('through a follower: the leader refuses the lease while the remove is in flight; the follower waits and answers OBJECT_NOT_FOUND', async () => {
    const { leader, follower, c, hold } = await setup();
    hold(true);
    const { removed, answered } = await removeInFlight(leader);
    let readDone = false;
    const read = outcome(raw(follower, 'reader').call('getReplicaList', { key: 'k' }, { timeoutMs: 15_000 }));
    void read.then(() => { readDone = true; });
    await new Promise((r) => setTimeout(r, 300));
    expect(answered()).toBe(false);
    expect(readDone).toBe(false); // without the fix: answered ok with the replicas, under a lease granted now
    hold(false);
    await kick(c);
    expect(await removed).toMatchObject({ ok: true });
    expect(await read).toEqual({ ok: false, code: ErrorCode.OBJECT_NOT_FOUND });
  });

  it('a segment drain planned by the leader holds the keys it drops: a read waits for it instead of being leased on the draining segment', async () => {
    const { leader, c, hold } = await setup();
    // Housekeeping by hand only, so the drain is planned while the appends are held back.
    const duties = (leader as unknown as { duties: { housekeeping(): Promise<void> } }).duties;
    const housekeeping = duties.housekeeping.bind(duties);
    duties.housekeeping = async () => {};
    // A first round with nothing draining raises the state version (every master announced the one it supports): the
    // held round below then proposes the drain itself, not the version change.
    await housekeeping();
    const state = (leader as unknown as { state: { stateVersion: number } }).state;
    await waitFor(() => state.stateVersion === supportedStateVersion);
    await c.unmountSegment('s1', true); // graceful: s1 is DRAINING, k's only replica is on it
    // The leader drains only after a repair pass that began with s1 DRAINING has ended (RepairScheduler.coversDrain).
    const repair = (leader as unknown as { repair: { coversDrain(ids: string[]): boolean } }).repair;
    await waitFor(() => repair.coversDrain(['s1']));
    hold(true);
    const st = () => leader.raftNode.status();
    const drained = housekeeping();
    await waitFor(() => st().lastIndex > st().commit);
    let readDone = false;
    const read = outcome(c.getReplicaList('k'));
    void read.then(() => { readDone = true; });
    await new Promise((r) => setTimeout(r, 300));
    // Without the hold the leader leased k and answered its replica on s1 here, which the drain then drops.
    expect(readDone).toBe(false);
    const leases = (leader as unknown as { leases: { isLeased(k: string, now: number): boolean } }).leases;
    expect(leases.isLeased('k', Date.now())).toBe(false);
    hold(false);
    await kick(c);
    await drained;
    const answer = await read;
    const replicas = answer.ok ? (answer.v as { replicas: Array<{ segmentId?: string }> }).replicas : [];
    expect(replicas.some((r) => r.segmentId === 's1')).toBe(false);
  });
});
