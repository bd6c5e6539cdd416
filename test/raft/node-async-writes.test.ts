/**
 * The Ready loop's pipelined storage writes, seen from outside a follower: a second append is handed to storage
 * while the first save is still syncing, an append response leaves only once the save holding its entries (and
 * every earlier one) resolved, and a failed save acknowledges nothing (crash-stop).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KvStateMachine } from '../../src/kvstore/kv-state-machine.js';
import type { Entry, Message } from '../../src/raft/core/types.js';
import { RaftNode } from '../../src/raft/node/index.js';
import { raftDefaults } from '../../src/raft/node/options.js';
import { Wal } from '../../src/raft/wal/wal.js';
import { GatedLog } from '../helpers/gated-log.js';
import type { PeerTransport } from '../../src/transport/types.js';

const dirs: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function startFollower(maxInflightSaves?: number): Promise<{ node: RaftNode; log: GatedLog; sent: Message[]; deliver: (m: Message) => void; fatal: Error[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mooring-async-'));
  dirs.push(dir);
  const wal = await Wal.open(path.join(dir, 'wal'));
  const sm = await KvStateMachine.open(path.join(dir, 'kv'));
  const log = new GatedLog(wal);
  const sent: Message[] = [];
  let handler: ((from: string, frame: unknown) => void) | null = null;
  const transport: PeerTransport = {
    start: async () => {},
    send: (_to, frame) => {
      const f = frame as { k: string; m?: Message[] };
      if (f.k === 'r' && f.m !== undefined) sent.push(...f.m);
      return true;
    },
    onFrame: (h) => { handler = h; },
    setPeer: () => {},
    removePeer: () => {},
    close: async () => {},
  };
  const node = await RaftNode.start({
    id: 'b',
    dataDir: dir,
    storage: log,
    transport,
    stateMachine: sm,
    peers: ['a', 'b', 'c'].map((id) => ({ id, host: 'memory', port: 0 })),
    bootstrapVoters: ['a', 'b', 'c'],
    tickMs: 10,
    electionTimeoutTicks: 500, // b never campaigns during the test
    ...(maxInflightSaves !== undefined ? { maxInflightSaves } : {}),
  });
  const fatal: Error[] = [];
  node.on('fatal', (e: Error) => fatal.push(e));
  cleanups.push(async () => {
    log.failAll();
    await node.stop();
    await wal.close();
    await sm.close();
  });
  return { node, log, sent, deliver: (m) => handler!('a', { k: 'r', m: [m] }), fatal };
}

function append(index: number, logTerm: number, entries: Entry[]): Message {
  return { type: 'app', from: 'a', to: 'b', term: 2, index, logTerm, entries, commit: 1 };
}

function ent(index: number): Entry {
  return { index, term: 2, type: 'normal', data: new Uint8Array(0) };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

const acks = (sent: Message[]): number[] => sent.filter((m) => m.type === 'appResp' && m.reject !== true).map((m) => m.index ?? -1);

describe('Ready loop: pipelined storage writes', () => {
  it('hands the next append to storage while a save syncs, and acknowledges each only once its save resolved', async () => {
    const { log, sent, deliver } = await startFollower();
    expect(raftDefaults.maxInflightSaves).toBeGreaterThanOrEqual(2);
    log.hold = true;
    deliver(append(1, 1, [ent(2)]));
    await waitUntil(() => log.held.length >= 1);
    deliver(append(2, 2, [ent(3)]));
    // Pipelining: the second save is issued while the first has not resolved.
    await waitUntil(() => log.held.length >= 2);
    await sleep(30);
    expect(acks(sent)).toEqual([]); // nothing durable yet: nothing acknowledged
    await log.release(1);
    await waitUntil(() => acks(sent).includes(2));
    await sleep(30);
    expect(acks(sent)).toEqual([2]); // entry 3's save is still held
    log.hold = false;
    await log.release();
    await waitUntil(() => acks(sent).includes(3));
    expect(acks(sent)).toEqual([2, 3]);
  });

  it('maxInflightSaves 1: the next save waits until the previous one resolved (a serial Ready loop)', async () => {
    const { log, sent, deliver } = await startFollower(1);
    log.hold = true;
    deliver(append(1, 1, [ent(2)]));
    await waitUntil(() => log.held.length >= 1);
    deliver(append(2, 2, [ent(3)]));
    await sleep(50);
    expect(log.held.length).toBe(1); // with 2 in flight allowed, the second save is issued here (test above)
    log.hold = false;
    await log.release();
    await waitUntil(() => acks(sent).includes(3));
    expect(acks(sent)).toEqual([2, 3]);
  });

  it('an acknowledgement that needs no write of its own still waits for the earlier save holding its entries', async () => {
    const { log, sent, deliver } = await startFollower();
    log.hold = true;
    deliver(append(1, 1, [ent(2)]));
    await waitUntil(() => log.held.length >= 1);
    const saves = log.saves;
    deliver(append(1, 1, [ent(2)])); // a retransmission: entry 2 is already in the log (its save in flight)
    await sleep(50);
    expect(log.saves).toBe(saves); // nothing new to write
    expect(acks(sent)).toEqual([]);
    log.hold = false;
    await log.release();
    await waitUntil(() => acks(sent).length >= 2);
    expect(acks(sent)).toEqual([2, 2]);
  });

  it('a failed save crash-stops the node and acknowledges neither it nor any later append', async () => {
    const { node, log, sent, deliver, fatal } = await startFollower();
    log.hold = true;
    deliver(append(1, 1, [ent(2)]));
    await waitUntil(() => log.held.length >= 1);
    deliver(append(2, 2, [ent(3)]));
    await waitUntil(() => log.held.length >= 2);
    // The first save fails; the second one (already handed to storage) would succeed.
    const first = log.held.shift()!;
    first.reject(new Error('fsync failed (test)'));
    await waitUntil(() => fatal.length > 0);
    log.hold = false;
    await log.release();
    await sleep(30);
    expect(acks(sent)).toEqual([]);
    await expect(Promise.resolve().then(() => node.propose(new Uint8Array([1])))).rejects.toThrow(/storage failure/);
  });

  it('a storage that fails between rounds (a poisoned WAL) is a crash-stop, not an exception escaping the loop', async () => {
    const { node, log, deliver, fatal } = await startFollower();
    const escaped: unknown[] = [];
    const onUncaught = (e: unknown): void => { escaped.push(e); };
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    try {
      deliver(append(1, 1, [ent(2)]));
      await waitUntil(() => log.saves >= 1);
      log.broken = new Error('STORAGE_FAILED (test): the WAL failed an earlier fsync');
      deliver(append(2, 2, [ent(3)])); // the next round reads the log and finds it broken
      await waitUntil(() => fatal.length > 0);
      await sleep(50);
      expect(escaped).toEqual([]);
      expect(node.isLeader).toBe(false);
    } finally {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUncaught);
      log.broken = null;
    }
  });
});
