/**
 * The KV test state machine (src/kvstore/kv-state-machine.ts) on a real LevelDB in a temp dir: its data lives only in
 * LevelDB, written behind the replies, so what it replies (previous values), reads, counts, snapshots and reloads
 * must come from there and from the batches not yet written, exactly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KvStateMachine, encodeKvCommand, kvWriteIntervalMs, maxKvWritesBehind, type KvCommand } from '../../src/kvstore/kv-state-machine.js';

const keyCount = async (sm: KvStateMachine): Promise<number> => (await sm.summary()).keys;
import type { AppliedCommand } from '../../src/raft/state-machine.js';

const dirs: string[] = [];
const open: KvStateMachine[] = [];
afterEach(async () => {
  for (const sm of open.splice(0)) await sm.close().catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function fresh(): Promise<{ sm: KvStateMachine; dir: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mooring-kvsm-'));
  dirs.push(dir);
  const sm = await KvStateMachine.open(dir);
  open.push(sm);
  return { sm, dir };
}

let nextIndex = 1;
function entries(...cmds: KvCommand[]): AppliedCommand[] {
  return cmds.map((c) => ({ index: nextIndex++, data: encodeKvCommand(c) }));
}

async function drain(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of chunks) out.push(c);
  return out;
}

describe('KvStateMachine (data in LevelDB only)', () => {
  it('replies with each command\'s previous value (when asked) inside one batch, and counts keys', async () => {
    const { sm } = await fresh();
    const batch = entries(
      { op: 'put', key: 'a', value: '1', prev: true },
      { op: 'put', key: 'a', value: '2', prev: true },
      { op: 'put', key: 'b', value: 'x', prev: true },
      { op: 'del', key: 'a', prev: true },
      { op: 'del', key: 'zz', prev: true },
      { op: 'put', key: 'c', value: 'no prev asked' },
    );
    const replies = await sm.apply(batch, batch.at(-1)!.index);
    expect(replies).toEqual([
      { ok: true, prev: null },
      { ok: true, prev: '1' },
      { ok: true, prev: null },
      { ok: true, prev: '2' },
      { ok: true, prev: null },
      { ok: true },
    ]);
    expect(await keyCount(sm)).toBe(2);
    expect(await sm.get('a')).toBeUndefined();
    expect(await sm.get('b')).toBe('x');
    // The next batch reads what the previous one wrote.
    const next = entries({ op: 'put', key: 'b', value: 'y', prev: true });
    expect(await sm.apply(next, next[0]!.index)).toEqual([{ ok: true, prev: 'x' }]);
    expect(await keyCount(sm)).toBe(2);
  });

  it('a retried write (same clientId, seq) gets its first reply and changes nothing', async () => {
    const { sm } = await fresh();
    const first = entries({ op: 'put', key: 'k', value: 'v1', clientId: 'c', seq: 1, prev: true });
    await sm.apply(first, first[0]!.index);
    const again = entries({ op: 'put', key: 'k', value: 'v2', clientId: 'c', seq: 1, prev: true });
    expect(await sm.apply(again, again[0]!.index)).toEqual([{ ok: true, prev: null }]);
    expect(await sm.get('k')).toBe('v1');
  });

  it('a snapshot is exactly the state at its index, whatever is applied while it streams; restore rebuilds it', async () => {
    const { sm } = await fresh();
    const a = entries(...Array.from({ length: 5000 }, (_, i): KvCommand => ({ op: 'put', key: `k${i}`, value: `v${i}` })));
    await sm.apply(a, a.at(-1)!.index);
    const hashAtSnapshot = await sm.stateHash();
    const image = sm.snapshot();
    expect(image.index).toBe(a.at(-1)!.index);
    // Applied after the snapshot was taken, before its chunks are read.
    const later = entries({ op: 'put', key: 'k0', value: 'changed' }, { op: 'del', key: 'k1' }, { op: 'put', key: 'new', value: 'n' });
    await sm.apply(later, later.at(-1)!.index);
    const chunks = await drain(image.chunks);
    expect(chunks.length).toBeGreaterThan(2); // header + more than one data chunk (4096 entries each)
    const { sm: copy } = await fresh();
    await copy.restore(image.index, (async function* () { yield* chunks; })());
    expect(await copy.stateHash()).toBe(hashAtSnapshot);
    expect(await keyCount(copy)).toBe(5000);
    expect(copy.appliedIndex()).toBe(image.index);
    expect(await copy.get('k0')).toBe('v0');
    expect(await copy.get('new')).toBeUndefined();
  });

  it('reopened, it has its keys, count, sessions and applied index back from LevelDB', async () => {
    const { sm, dir } = await fresh();
    const a = entries({ op: 'put', key: 'x', value: '1', clientId: 'c', seq: 7, prev: true }, { op: 'put', key: 'y', value: '2' });
    await sm.apply(a, a.at(-1)!.index);
    await sm.flush();
    const hash = await sm.stateHash();
    await sm.close();
    open.splice(open.indexOf(sm), 1);
    const back = await KvStateMachine.open(dir);
    open.push(back);
    expect(back.appliedIndex()).toBe(a.at(-1)!.index);
    expect(await keyCount(back)).toBe(2);
    expect(await back.stateHash()).toBe(hash);
    const retry = entries({ op: 'put', key: 'x', value: 'other', clientId: 'c', seq: 7 });
    expect(await back.apply(retry, retry[0]!.index)).toEqual([{ ok: true, prev: null }]); // the session survived
    expect(await back.get('x')).toBe('1');
  });

  it('written behind the replies: reads, later applies and a snapshot taken before the write landed see exactly the applied state', async () => {
    const { sm } = await fresh();
    const a = entries(...Array.from({ length: 3000 }, (_, i): KvCommand => ({ op: 'put', key: `k${i}`, value: `v${i}` })));
    // Applied back to back, nothing awaited in between but the applies themselves (their writes trail behind).
    await sm.apply(a, a.at(-1)!.index);
    expect(await sm.get('k2999')).toBe('v2999');
    const b = entries({ op: 'put', key: 'k0', value: 'b0', prev: true }, { op: 'del', key: 'k1', prev: true });
    expect(await sm.apply(b, b.at(-1)!.index)).toEqual([{ ok: true, prev: 'v0' }, { ok: true, prev: 'v1' }]);
    const image = sm.snapshot();
    expect(image.index).toBe(b.at(-1)!.index);
    const c = entries({ op: 'put', key: 'k0', value: 'c0' }, { op: 'put', key: 'late', value: 'x' });
    await sm.apply(c, c.at(-1)!.index);
    expect(await sm.get('k0')).toBe('c0');
    expect(await sm.get('k1')).toBeUndefined();
    const chunks = await drain(image.chunks);
    const { sm: copy } = await fresh();
    await copy.restore(image.index, (async function* () { yield* chunks; })());
    expect(await copy.get('k0')).toBe('b0'); // b applied, c not
    expect(await copy.get('k1')).toBeUndefined();
    expect(await copy.get('late')).toBeUndefined();
    expect(await keyCount(copy)).toBe(2999);
    // flush makes everything applied so far durable, applied index included.
    await sm.flush();
    expect(await keyCount(sm)).toBe(3000);
  });

  it('a batch that fails to reach LevelDB stops the state machine: the next apply throws (the node crash-stops and replays)', async () => {
    const { sm } = await fresh();
    const db = (sm as unknown as { db: { batch(): unknown } }).db;
    const realBatch = db.batch.bind(db);
    db.batch = () => {
      const b = realBatch() as { write(): Promise<void> };
      b.write = () => Promise.reject(new Error('EIO: injected'));
      return b;
    };
    const a = entries({ op: 'put', key: 'x', value: '1' });
    expect(await sm.apply(a, a[0]!.index)).toEqual([{ ok: true }]); // answered before the write
    const b = entries({ op: 'put', key: 'y', value: '2' });
    await expect((async () => {
      for (let i = 0; i < 50; i++) {
        await sm.apply(b, b[0]!.index);
        await new Promise((r) => setTimeout(r, 1));
      }
    })()).rejects.toThrow(/EIO: injected/);
    await expect(sm.flush()).rejects.toThrow(/EIO: injected/);
  });

  it(`the applies of kvWriteIntervalMs (${kvWriteIntervalMs} ms) share one LevelDB write; flush and close write it at once`, async () => {
    const { sm, dir } = await fresh();
    const db = (sm as unknown as { db: { batch(): unknown } }).db;
    const realBatch = db.batch.bind(db);
    let writes = 0;
    db.batch = () => {
      const b = realBatch() as { write(): Promise<void> };
      const write = b.write.bind(b);
      b.write = () => { writes++; return write(); };
      return b;
    };
    for (let i = 0; i < 5; i++) {
      const e = entries({ op: 'put', key: `j${i}`, value: `w${i}` });
      expect(await sm.apply(e, e[0]!.index)).toEqual([{ ok: true }]);
    }
    expect(writes).toBe(0); // nothing written yet: the interval has not run out
    expect(await sm.get('j3')).toBe('w3'); // readable from memory meanwhile
    await new Promise((r) => setTimeout(r, kvWriteIntervalMs + 30));
    expect(writes).toBe(1); // one write for the five applies
    const e = entries({ op: 'put', key: 'late', value: 'z' });
    await sm.apply(e, e[0]!.index);
    await sm.flush(); // does not wait for the interval: the open batch is written first, then the synced index
    expect(writes).toBe(2);
    const applied = sm.appliedIndex();
    const e2 = entries({ op: 'put', key: 'last', value: 'q' });
    await sm.apply(e2, e2[0]!.index);
    await sm.close(); // writes the open batch before closing
    expect(writes).toBe(3);
    const again = await KvStateMachine.open(dir);
    expect(again.appliedIndex()).toBeGreaterThan(applied);
    expect(await again.get('last')).toBe('q');
    expect(await again.get('j0')).toBe('w0');
    await again.close();
  });

  it(`writes behind at most maxKvWritesBehind (${maxKvWritesBehind}) batches: the next apply waits for the oldest to land`, async () => {
    const { sm } = await fresh();
    // LevelDB writes held until the test lets them go (the real batch is written then).
    const held: Array<() => void> = [];
    let holding = true;
    const db = (sm as unknown as { db: { batch(): unknown } }).db;
    const realBatch = db.batch.bind(db);
    db.batch = () => {
      const b = realBatch() as { write(): Promise<void> };
      const write = b.write.bind(b);
      b.write = () => (holding ? new Promise<void>((resolve, reject) => held.push(() => void write().then(resolve, reject))) : write());
      return b;
    };
    const release = (): void => {
      holding = false;
      while (held.length > 0) held.shift()!();
    };
    try {
      for (let i = 0; i < maxKvWritesBehind; i++) {
        const e = entries({ op: 'put', key: `k${i}`, value: `v${i}` });
        expect(await sm.apply(e, e[0]!.index)).toEqual([{ ok: true }]); // answered with its write still held
        await new Promise((r) => setTimeout(r, kvWriteIntervalMs + 15)); // its batch's write starts (and is held)
      }
      const extra = entries({ op: 'put', key: 'over', value: 'x' });
      let answered = false;
      const last = sm.apply(extra, extra[0]!.index).then((r) => { answered = true; return r; });
      await new Promise((r) => setTimeout(r, 50));
      expect(answered).toBe(false); // the limit holds it
      expect(await sm.get('k0')).toBe('v0'); // unwritten values are readable meanwhile
      // Writes are started one at a time, in apply order: let them land one by one.
      while (!answered) {
        held.shift()?.();
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(await last).toEqual([{ ok: true }]);
      release();
      await sm.flush(); // in write order: after every batch landed
      expect(await keyCount(sm)).toBe(maxKvWritesBehind + 1);
    } finally {
      release(); // whatever failed above, the held writes go out (close() waits for them)
    }
  });
});
