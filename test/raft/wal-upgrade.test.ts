/**
 * Upgrading a 0.1 data dir (LevelDB Raft log, written here with 0.1's LogStore class) to the WAL at start.
 */
import { cpSync, existsSync, readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { KvClient } from '../../src/kvstore/client.js';
import { KvServer } from '../../src/kvstore/server.js';
import { LogStore } from '../../src/raft/log-store.js';
import type { ConfState, Entry } from '../../src/raft/core/types.js';
import { convertingSuffix, legacyBackupSuffix, openRaftLog } from '../../src/raft/wal/open.js';
import { Wal } from '../../src/raft/wal/wal.js';
import { freePorts } from '../helpers/ports.js';
import { rewriteAsLegacyLog } from '../helpers/legacy-log.js';

const dirs: string[] = [];
const cleanups: Array<() => Promise<void>> = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'mooring-walup-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
  while (dirs.length > 0) await rm(dirs.pop()!, { recursive: true, force: true });
});

const conf: ConfState = { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const conf2: ConfState = { voters: ['a', 'b', 'c'], learners: ['d'], votersOutgoing: [], learnersNext: [], autoLeave: false };
const ent = (index: number, term: number): Entry => ({ index, term, type: index % 9 === 0 ? 'confChange' : 'normal', data: new TextEncoder().encode(`cmd-${index}`) });
const plain = (es: Entry[]) => es.map((e) => ({ ...e, data: Buffer.from(e.data).toString() }));

/** A 0.1 log: snapshot point 1, entries 2..60 over two terms, compacted to 30 behind a snapshot at 40, a recorded conf state. */
async function legacyLog(dir: string): Promise<void> {
  const s = await LogStore.open(dir);
  await s.applySnapshot({ index: 1, term: 1, confState: conf });
  await s.save({ entries: Array.from({ length: 39 }, (_, k) => ent(2 + k, 1)), hardState: { term: 1, vote: 'a', commit: 20 } }, { sync: true });
  await s.save({ entries: Array.from({ length: 20 }, (_, k) => ent(41 + k, 2)), hardState: { term: 2, vote: 'b', commit: 55 }, confState: conf2 }, { sync: true });
  await s.compact(30, { index: 40, term: 1, confState: conf });
  await s.close();
}

async function expectConverted(w: Wal): Promise<void> {
  expect([w.firstIndex(), w.lastIndex(), w.term(30), w.term(40), w.term(41)]).toEqual([31, 60, 1, 1, 2]);
  expect(plain(w.entries(31, 61, Infinity))).toEqual(plain([...Array.from({ length: 10 }, (_, k) => ent(31 + k, 1)), ...Array.from({ length: 20 }, (_, k) => ent(41 + k, 2))]));
  expect(w.snapshot().metadata).toEqual({ index: 40, term: 1, confState: conf });
  expect(w.initialState()).toEqual({ hardState: { term: 2, vote: 'b', commit: 55 }, confState: conf });
  expect(w.recordedConfState()).toEqual(conf2);
}

describe('0.1 → WAL upgrade', () => {
  it('converts a 0.1 LevelDB log once: entries, hard state, conf state and snapshot metadata survive; the old log is kept as a backup', async () => {
    const root = await tempDir();
    const legacyDir = path.join(root, 'log');
    const walDir = path.join(root, 'wal');
    await legacyLog(legacyDir);
    const w = await openRaftLog({ walDir, legacyDir });
    await expectConverted(w);
    await w.close();
    expect(existsSync(legacyDir)).toBe(false);
    expect(existsSync(path.join(legacyDir + legacyBackupSuffix, 'CURRENT'))).toBe(true);
    // The backup is still a readable 0.1 log.
    const old = await LogStore.open(legacyDir + legacyBackupSuffix);
    expect([old.firstIndex(), old.lastIndex()]).toEqual([31, 60]);
    await old.close();
    const again = await openRaftLog({ walDir, legacyDir });
    await expectConverted(again);
    await again.close();
  });

  it('a conversion that crashed (a failed durable write) leaves the 0.1 log untouched, and the next start converts it', async () => {
    const root = await tempDir();
    const legacyDir = path.join(root, 'log');
    const walDir = path.join(root, 'wal');
    await legacyLog(legacyDir);
    let syncs = 0;
    await expect(openRaftLog({
      walDir,
      legacyDir,
      io: { write: async (fh, buf, pos) => { if (++syncs === 3) throw new Error('EIO: injected'); await fh.write(buf, 0, buf.byteLength, pos); } },
    })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    expect(existsSync(path.join(legacyDir, 'CURRENT'))).toBe(true);
    expect(Wal.exists(walDir)).toBe(false);
    expect(existsSync(walDir + convertingSuffix)).toBe(true); // the half-written staging dir
    const w = await openRaftLog({ walDir, legacyDir });
    await expectConverted(w);
    await w.close();
    expect(existsSync(walDir + convertingSuffix)).toBe(false);
  });

  it('a crash after the WAL became durable but before the old log was moved: the WAL is used, not reconverted', async () => {
    const root = await tempDir();
    const legacyDir = path.join(root, 'log');
    const walDir = path.join(root, 'wal');
    await legacyLog(legacyDir);
    const w = await openRaftLog({ walDir, legacyDir });
    await w.save({ entries: [ent(61, 3)], hardState: { term: 3, vote: 'c', commit: 60 } }, { sync: true });
    await w.close();
    cpSync(legacyDir + legacyBackupSuffix, legacyDir, { recursive: true }); // as if the rename had not happened
    const r = await openRaftLog({ walDir, legacyDir });
    expect([r.lastIndex(), r.hardState().term]).toEqual([61, 3]);
    await r.close();
    expect(existsSync(legacyDir)).toBe(false);
  });

  it('a 0.1 log held open by another process is refused with a clear error', async () => {
    const root = await tempDir();
    const legacyDir = path.join(root, 'log');
    await legacyLog(legacyDir);
    const holder = await LogStore.open(legacyDir); // LevelDB's own lock, as a running 0.1 process holds it
    cleanups.push(() => holder.close());
    await expect(openRaftLog({ walDir: path.join(root, 'wal'), legacyDir })).rejects.toThrow(/another process holds/);
  });

  it('a KV node whose data dir was written by 0.1 converts it at start, rebuilds its state from the log and serves', async () => {
    const root = await tempDir();
    const dataDir = path.join(root, 'n1');
    const [raftPort, rpcPort] = await freePorts(2);
    const config = {
      id: 'n1', clusterId: 'up', dataDir, bootstrap: true,
      raft: { host: '127.0.0.1', port: raftPort! }, rpc: { host: '127.0.0.1', port: rpcPort! },
      peers: [{ id: 'n1', host: '127.0.0.1', raftPort: raftPort!, rpcPort: rpcPort! }],
    };
    const client = () => {
      const k = new KvClient({ endpoints: [`127.0.0.1:${rpcPort}`], clusterId: 'up', maxAttempts: 40, backoff: { initialMs: 20, maxMs: 200 } });
      cleanups.push(() => k.close());
      return k;
    };
    let server = await KvServer.start(config);
    cleanups.push(() => server.stop());
    const k = client();
    for (let i = 0; i < 40; i++) await k.put(`key${i}`, `v${i}`);
    const term = (await server.status()).term;
    await server.stop();

    // Rewrite the node's log in 0.1's format (LevelDB, dataDir/log) with today's LogStore class, drop the WAL, and
    // drop the KV state too, so the keys can only come back by replaying the converted log.
    await rewriteAsLegacyLog(path.join(dataDir, 'wal'), path.join(dataDir, 'log'));
    rmSync(path.join(dataDir, 'kv'), { recursive: true });

    server = await KvServer.start(config);
    expect(readdirSync(dataDir)).toEqual(expect.arrayContaining(['wal', `log${legacyBackupSuffix}`]));
    expect(readdirSync(dataDir)).not.toContain('log');
    const k2 = client();
    for (let i = 0; i < 40; i++) expect(await k2.get(`key${i}`)).toBe(`v${i}`);
    await k2.put('after', 'upgrade');
    expect(await k2.get('after')).toBe('upgrade');
    expect((await server.status()).term).toBeGreaterThanOrEqual(term);
  }, 60_000);
});
