/**
 * What a follower and a deposed leader tell clients (issue 17): a follower that has not heard from its leader within
 * an election timeout stops naming it, and a write in flight at a leader that loses leadership is answered
 * NOT_LEADER (outcome unknown) with the new leader, at once. Three in-process masters on real sockets and LevelDB;
 * a master is silenced by dropping everything its peer transport sends (a one-way black hole, as a paused process
 * looks to its peers).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterNode } from '../../src/master/master-node.js';
import { MasterClient } from '../../src/master/client.js';
import { RpcClient } from '../../src/transport/rpc.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();

async function cluster(): Promise<MasterNode[]> {
  // 300-600 ms elections, parking up to 1.2 s: slack for a loaded machine.
  const nodes = await startMasters(cleanup, { prefix: 'mooring-hints-', config: { raft: { tickMs: 50 } } });
  // A settled leader: every member follows the same one (right after start a deposed leader may still say it leads).
  await waitFor(() => nodes.some((n) => n.isLeader) && nodes.every((n) => n.leaderId !== null && n.leaderId === nodes[0]!.leaderId));
  return nodes;
}

/** Drops everything `node` sends to its peers; returns a function that undoes it. */
function silence(node: MasterNode): () => void {
  const t = (node as unknown as { transport: { send(to: string, frame: unknown): boolean } }).transport;
  const send = t.send;
  t.send = () => false;
  return () => { t.send = send; };
}

function raw(node: MasterNode): RpcClient {
  const c = new RpcClient({ host: '127.0.0.1', port: node.ports.rpc, clusterId: 'mooring', nodeId: 'raw' });
  cleanup.push(() => c.close());
  return c;
}

const outcome = (p: Promise<unknown>) => p.then((v) => ({ ok: true as const, v }), (e: { code?: string; leaderHint?: string; definite?: boolean }) => ({ ok: false as const, code: e.code, hint: e.leaderHint, definite: e.definite }));
const seg = { id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z' };

describe('leader hints during a failover', () => {
  it('a follower that knows no live leader parks a request until one is elected, then answers from there', async () => {
    const nodes = await cluster();
    const leader = nodes.find((n) => n.isLeader)!;
    const [f1, f2] = nodes.filter((n) => n !== leader);
    // The leader and one follower go silent: the other follower can neither hear its leader nor elect a new one.
    const restore = silence(leader);
    const restoreF1 = silence(f1!);
    await waitFor(() => f2!.leaderId === null);
    await new Promise((r) => setTimeout(r, 200));
    expect(nodes.some((n) => n !== leader && n.isLeader)).toBe(false);
    // Asked now, it knows no leader: it holds the request; f1 speaks again, f1 and f2 elect a leader, and the
    // request is served (f2 won) or answered with the new leader's address (f1 won) — never "no leader known".
    const pending = outcome(raw(f2!).call('existKey', { key: 'k' }, { timeoutMs: 5_000 }));
    restoreF1();
    const r = await pending;
    const now = nodes.find((n) => n !== leader && n.isLeader);
    expect(now, `${JSON.stringify(r)} ${nodes.map((n) => `${n.id}:${n.raftNode.status().role}:${n.leaderId}:${n.raftNode.status().term}`).join(' ')}`).toBeDefined();
    if (now === f2) expect(r).toEqual({ ok: true, v: false });
    else expect(r).toMatchObject({ ok: false, code: ErrorCode.NOT_LEADER, hint: `${f1!.id}@127.0.0.1:${f1!.ports.rpc}` });
    restore();
  });

  it('a write in flight at a leader that loses leadership is answered at once: NOT_LEADER, outcome unknown', async () => {
    const nodes = await cluster();
    const leader = nodes.find((n) => n.isLeader)!;
    const c = new MasterClient({ endpoints: [`127.0.0.1:${leader.ports.rpc}`] });
    cleanup.push(() => c.close());
    await c.mountSegment(seg);
    silence(leader);
    const r = await outcome(raw(leader).call('putStart', { key: 'p', size: 100, replicaNum: 1, clientId: 'w', seq: 1 }, { timeoutMs: 20_000 }));
    // It stepped down (check-quorum, or a newer term): the write may still commit elsewhere, so not definite, and
    // the answer never names the deposed leader itself.
    expect(r).toMatchObject({ ok: false, code: ErrorCode.NOT_LEADER, definite: false });
    expect(r.ok === false && r.hint !== undefined && r.hint.startsWith(`${leader.id}@`)).toBe(false);
  });
});
