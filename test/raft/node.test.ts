/**
 * RaftNode driver, in one process: real LevelDB logs and KV state machines in temp dirs, the in-memory transport
 * (same codec as TCP). Real-process clusters are covered in test/raft/process-cluster.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { Wal } from '../../src/raft/wal/wal.js';
import { RaftNode } from '../../src/raft/node/index.js';
import { MemoryNetwork } from '../../src/transport/memory-transport.js';
import { KvStateMachine, encodeKvCommand } from '../../src/kvstore/kv-state-machine.js';

interface Member {
  id: string;
  dir: string;
  node: RaftNode;
  log: Wal;
  sm: KvStateMachine;
  /** Peers this member's transport was told to forget (removePeer). */
  removedPeers: string[];
}

const dirs: string[] = [];
const running: Member[] = [];

afterEach(async () => {
  for (const m of running.splice(0)) await shutdown(m);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function shutdown(m: Member): Promise<void> {
  await m.node.stop();
  await m.log.close();
  await m.sm.close();
}

async function startMember(net: MemoryNetwork, root: string, id: string, voters: string[] | undefined, all: string[], extra: Partial<Parameters<typeof RaftNode.start>[0]> = {}): Promise<Member> {
  const dir = path.join(root, id);
  const log = await Wal.open(path.join(dir, 'wal'));
  const sm = await KvStateMachine.open(path.join(dir, 'kv'));
  const transport = net.transport(id);
  const removedPeers: string[] = [];
  const removePeer = transport.removePeer.bind(transport);
  transport.removePeer = (peer: string) => { removedPeers.push(peer); removePeer(peer); };
  await transport.start();
  const node = await RaftNode.start({
    id,
    dataDir: dir,
    storage: log,
    transport,
    stateMachine: sm,
    peers: all.map((p) => ({ id: p, host: 'memory', port: 0 })),
    ...(voters !== undefined ? { bootstrapVoters: voters } : {}),
    tickMs: 10,
    ...(process.env.DEBUG_RAFT ? { logger: { debug() {}, info: (o: object, m?: string) => console.log(id, m, JSON.stringify(o)), warn: (o: object, m?: string) => console.log(id, "WARN", m, JSON.stringify(o)), error: (o: object, m?: string) => console.log(id, "ERR", m, JSON.stringify(o)) } } : {}),
    electionTimeoutTicks: 10,
    ...extra,
  });
  const m = { id, dir, node, log, sm, removedPeers };
  running.push(m);
  return m;
}

async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function leaderOf(members: Member[]): Member | undefined {
  return members.find((m) => m.node.isLeader);
}

async function put(m: Member, key: string, value: string, clientId?: string, seq?: number): Promise<unknown> {
  // prev: true, so replies show the order commands were applied in.
  return m.node.propose(encodeKvCommand({ op: 'put', key, value, prev: true, ...(clientId ? { clientId, seq: seq! } : {}) }));
}

function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'mooring-node-'));
  dirs.push(d);
  return d;
}

const ids = ['a', 'b', 'c'];

/** Three members on one in-memory network, each with its own LevelDB dirs; resolves once a leader is elected. */
async function threeNodes(extra: Partial<Parameters<typeof RaftNode.start>[0]> = {}): Promise<{ net: MemoryNetwork; root: string; members: Member[]; leader: Member }> {
  const net = new MemoryNetwork();
  const root = tmp();
  const members = await Promise.all(ids.map((id) => startMember(net, root, id, ids, ids, extra)));
  await waitUntil(() => leaderOf(members) !== undefined);
  return { net, root, members, leader: leaderOf(members)! };
}

describe('RaftNode (in-process, real LevelDB)', () => {
  it('elects a leader, replicates writes to every state machine, and serves linearizable reads', async () => {
    const { members, leader } = await threeNodes();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => put(leader, `k${i}`, `v${i}`)));
    expect(results.every((r) => (r as { ok: boolean }).ok)).toBe(true);
    await leader.node.read();
    expect(await leader.sm.get('k199')).toBe('v199');
    await waitUntil(async () => (await Promise.all(members.map(async (m) => (await m.sm.summary()).keys))).every((n) => n === 200));
    const hashes = new Set(await Promise.all(members.map((m) => m.sm.stateHash())));
    expect(hashes.size).toBe(1);
    // A follower refuses writes and reads with NOT_LEADER and names the leader.
    const follower = members.find((m) => m !== leader)!;
    await expect(put(follower, 'x', 'y')).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER, leaderHint: leader.id });
    await expect(follower.node.read()).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER });
  });

  it('batches concurrent proposals into shared entries and returns each caller its own result', async () => {
    const { members, leader } = await threeNodes();
    const before = leader.log.lastIndex();
    // 100 puts to one key in one turn: applied in call order, so put i sees put i-1's value as `prev`.
    const results = (await Promise.all(Array.from({ length: 100 }, (_, i) => put(leader, 'x', `v${i}`)))) as { prev: string | null }[];
    results.forEach((r, i) => expect(r.prev).toBe(i === 0 ? null : `v${i - 1}`));
    expect(leader.log.lastIndex() - before).toBeLessThan(10); // far fewer entries than commands
    await waitUntil(async () => (await Promise.all(members.map((m) => m.sm.get('x')))).every((v) => v === 'v99'));
  });

  it('counts the time the process was frozen: an isolated leader serves no lease read after a pause', async () => {
    const { net, leader } = await threeNodes({ readMode: 'lease' });
    await put(leader, 'k', 'v');
    await leader.node.read(); // holds a lease now
    net.isolate(leader.id);
    // Freeze the whole process for 5 election timeouts (a GC pause, SIGSTOP, a stalled VM): the interval timer
    // then fires once, but the lease ran out long ago and the leader has heard from no quorum since.
    const frozenUntil = Date.now() + 5 * 10 * 10;
    while (Date.now() < frozenUntil) { /* frozen */ }
    await expect(leader.node.read()).rejects.toMatchObject({ code: ErrorCode.NOT_LEADER });
    net.heal();
  });

  it('counts ticks that ran late by half an election timeout or more (a stalled process), with the longest delay', async () => {
    const { members } = await threeNodes();
    const before = members.map((m) => m.node.status().clockStalls);
    // Freeze the process for 150 ms, 1.5 election timeouts (10 ticks of 10 ms): every node's next tick is late.
    const frozenUntil = Date.now() + 150;
    while (Date.now() < frozenUntil) { /* frozen */ }
    await new Promise((r) => setTimeout(r, 30));
    members.forEach((m, i) => {
      const st = m.node.status();
      expect(st.clockStalls, m.id).toBeGreaterThan(before[i]!);
      expect(st.longestClockStallMs, m.id).toBeGreaterThanOrEqual(140);
    });
  });

  it('applies a retried write once (exactly-once by clientId/seq)', async () => {
    const { members, leader } = await threeNodes();
    const first = await put(leader, 'k', 'v1', 'client-1', 1);
    await put(leader, 'k', 'v2', 'client-2', 1);
    const retry = await put(leader, 'k', 'v1', 'client-1', 1);
    expect(retry).toEqual(first);
    expect(await leader.sm.get('k')).toBe('v2');
  });

  it('keeps every acknowledged write across a full-cluster restart from the same directories', async () => {
    const root = tmp();
    let net = new MemoryNetwork();
    let members = await Promise.all(ids.map((id) => startMember(net, root, id, ids, ids, { snapshotEveryEntries: 50, snapshotKeepEntries: 10 })));
    await waitUntil(() => leaderOf(members) !== undefined);
    let leader = leaderOf(members)!;
    for (let i = 0; i < 120; i++) await put(leader, `k${i}`, `v${i}`);
    for (const m of running.splice(0)) await shutdown(m);

    net = new MemoryNetwork();
    members = await Promise.all(ids.map((id) => startMember(net, root, id, ids, ids, { snapshotEveryEntries: 50, snapshotKeepEntries: 10 })));
    await waitUntil(() => leaderOf(members) !== undefined);
    leader = leaderOf(members)!;
    await leader.node.read();
    for (let i = 0; i < 120; i++) expect(await leader.sm.get(`k${i}`)).toBe(`v${i}`);
    expect(leader.log.firstIndex()).toBeGreaterThan(1); // the log really was compacted
  });

  it('draws a new incarnation at each start unless seeded: a restarted node never reuses its previous round ids', async () => {
    // A default seed derived from the node id gave every process of a node the same follower-lease epoch, and read
    // rounds numbered from 1 again: an answer to the previous process's round was taken by the new one.
    const root = tmp();
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) {
      const m = await startMember(new MemoryNetwork(), root, 'a', ['a'], ['a']);
      seen.push(m.node.incarnation);
      await shutdown(running.splice(0)[0]!);
    }
    expect(new Set(seen).size).toBe(3);
    const seeded: number[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await startMember(new MemoryNetwork(), root, 'a', ['a'], ['a'], { seed: 42 });
      seeded.push(m.node.incarnation);
      await shutdown(running.splice(0)[0]!);
    }
    expect(seeded[0]).toBe(seeded[1]); // the simulator replays: one seed per incarnation, drawn by the schedule
  });

  it('catches up a far-behind follower with a streamed snapshot', async () => {
    const opts = { snapshotEveryEntries: 40, snapshotKeepEntries: 5 };
    const { net, root, members } = await threeNodes(opts);
    const leader = leaderOf(members)!;
    const lagging = members.find((m) => m !== leader)!;
    const lagIndex = running.indexOf(lagging);
    running.splice(lagIndex, 1);
    await shutdown(lagging);
    for (let i = 0; i < 300; i++) await put(leader, `k${i}`, `v${i}`);
    expect(leader.log.firstIndex()).toBeGreaterThan(100); // compacted beyond what the lagging node has
    const events: string[] = [];
    const capture = { debug() {}, info: (_o: object, m?: string) => { events.push(m ?? ''); }, warn() {}, error() {} };
    const back = await startMember(net, root, lagging.id, ids, ids, { ...opts, logger: capture });
    // Caught up by a snapshot streamed from the leader (not by entries, which the leader no longer has).
    await waitUntil(async () => events.includes('installed snapshot from leader') && (await back.sm.summary()).keys === 300, 20_000);
    expect(await back.sm.stateHash()).toBe(await leader.sm.stateHash());
  });

  it('transfers leadership on request and on a graceful stop', async () => {
    const { members, leader } = await threeNodes();
    const target = members.find((m) => m !== leader)!;
    await put(leader, 'k', 'v');
    await leader.node.transferLeadership(target.id);
    await waitUntil(() => target.node.isLeader);
    running.splice(running.indexOf(target), 1);
    await target.node.stop({ transfer: true });
    await target.log.close();
    await target.sm.close();
    const rest = members.filter((m) => m !== target);
    await waitUntil(() => leaderOf(rest) !== undefined);
    await put(leaderOf(rest)!, 'k2', 'v2');
  });

  it('removing the leader moves leadership first, so the survivor of a two-voter cluster keeps a leader', async () => {
    const net = new MemoryNetwork();
    const root = tmp();
    const two = ['a', 'b'];
    const members = await Promise.all(two.map((id) => startMember(net, root, id, two, two)));
    await waitUntil(() => leaderOf(members) !== undefined);
    const old = leaderOf(members)!;
    const survivor = members.find((m) => m !== old)!;
    await put(old, 'before', 'removal');
    // The leader does not remove itself: it hands over and names the node to ask.
    const err = await old.node.removeMember(old.id).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(MooringError);
    expect((err as MooringError).code).toBe(ErrorCode.NOT_LEADER);
    expect((err as MooringError).leaderHint).toBe(survivor.id);
    expect(survivor.node.isLeader).toBe(true);
    const cs = await survivor.node.removeMember(old.id);
    expect(cs.voters).toEqual([survivor.id]);
    // The operator stops the removed node at once: the survivor alone still commits.
    running.splice(running.indexOf(old), 1);
    await shutdown(old);
    expect(survivor.node.isLeader).toBe(true);
    await put(survivor, 'after', 'removal');
    expect(await survivor.sm.get('after')).toBe('removal');
  });

  it('adds a new member as a learner, promotes it, and removes a dead one', async () => {
    const cluster = await threeNodes();
    const { net, root, members } = cluster;
    let leader = cluster.leader;
    for (let i = 0; i < 20; i++) await put(leader, `k${i}`, `v${i}`);
    // "c" (not the leader) dies for good; "d" replaces it.
    const dead = members.find((m) => m !== leader)!;
    running.splice(running.indexOf(dead), 1);
    await shutdown(dead);
    const d = await startMember(net, root, 'd', undefined, [...ids, 'd']);
    await leader.node.addMember({ id: 'd', host: 'memory', port: 0 });
    const cs = await leader.node.removeMember(dead.id);
    expect(cs.voters.sort()).toEqual(ids.filter((x) => x !== dead.id).concat('d').sort());
    leader = leaderOf(running)!;
    await put(leader, 'after', 'change');
    await waitUntil(async () => (await d.sm.get('after')) === 'change');
    expect(await d.sm.get('k0')).toBe('v0');
    // The joiner knows the whole membership (not just itself).
    await waitUntil(() => d.node.members().voters.length === 3);
    expect([...d.node.members().voters].sort()).toEqual(cs.voters.sort());
    // Every remaining member dropped the removed one from its transport (its frames are refused from now on).
    await waitUntil(() => running.every((m) => m.removedPeers.includes(dead.id)));
    expect(running.every((m) => !m.removedPeers.includes(m.id) && !m.removedPeers.includes('d'))).toBe(true);
  });

  it('follower read leases: a follower serves reads with no round to the leader and sees every acknowledged write', async () => {
    const { members, leader, net } = await threeNodes({ readMode: 'lease', followerLeaseTicks: 5 });
    const followers = members.filter((m) => m !== leader);
    for (let i = 0; i < 20; i++) {
      await put(leader, 'k', `v${i}`);
      // Acknowledged on the leader: a follower's read that starts now must see it, lease or round.
      for (const f of followers) {
        await f.node.read({ allowFollower: true });
        expect(await f.sm.get('k')).toBe(`v${i}`);
      }
      await new Promise((r) => setTimeout(r, 10)); // a tick: the followers ask, the leader grants
    }
    for (const f of followers) {
      const st = f.node.status().followerLease;
      expect(st.readsServed, `${f.id} served reads under its lease`).toBeGreaterThan(0);
      expect(st.heldTicks).toBeGreaterThan(0);
    }
    expect(leader.node.status().followerLease.gates).toBeGreaterThan(0);
    // Cut off from its leader, a follower stops serving under its lease within the lease (its own clock).
    const f = followers[0]!;
    net.isolate(f.id);
    await waitUntil(() => f.node.status().followerLease.heldTicks === 0, 2_000);
  });

  it('follower read leases off (the default): every follower read takes a round', async () => {
    const { members, leader } = await threeNodes({ readMode: 'lease' });
    await put(leader, 'k', 'v');
    const f = members.find((m) => m !== leader)!;
    for (let i = 0; i < 10; i++) {
      await f.node.read({ allowFollower: true });
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(f.node.status().followerLease).toEqual({ heldTicks: 0, gates: 0, readsServed: 0 });
  });

  it('rejects proposals once stopped, with a clear code', async () => {
    const net = new MemoryNetwork();
    const root = tmp();
    const m = await startMember(net, root, 'solo', ['solo'], ['solo']);
    await waitUntil(() => m.node.isLeader);
    await put(m, 'k', 'v');
    await m.node.stop();
    let err: unknown;
    try {
      await put(m, 'k', 'v');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MooringError);
    expect((err as MooringError).code).toBe(ErrorCode.SHUTTING_DOWN);
  });
});
