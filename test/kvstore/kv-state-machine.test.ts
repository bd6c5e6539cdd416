/**
 * The KV test state machine (src/kvstore/kv-state-machine.ts) on a real LevelDB in a temp dir: its data lives only in
 * LevelDB, so what it replies (previous values), counts, snapshots and reloads must come from there exactly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KvStateMachine, encodeKvCommand, type KvCommand } from '../../src/kvstore/kv-state-machine.js';
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
  it('replies with each command\'s previous value inside one batch, and counts keys', async () => {
    const { sm } = await fresh();
    const batch = entries(
      { op: 'put', key: 'a', value: '1' },
      { op: 'put', key: 'a', value: '2' },
      { op: 'put', key: 'b', value: 'x' },
      { op: 'del', key: 'a' },
      { op: 'del', key: 'zz' },
    );
    const replies = await sm.apply(batch, batch.at(-1)!.index);
    expect(replies).toEqual([
      { ok: true, prev: null },
      { ok: true, prev: '1' },
      { ok: true, prev: null },
      { ok: true, prev: '2' },
      { ok: true, prev: null },
    ]);
    expect(sm.size).toBe(1);
    expect(await sm.get('a')).toBeUndefined();
    expect(await sm.get('b')).toBe('x');
    // The next batch reads what the previous one wrote.
    const next = entries({ op: 'put', key: 'b', value: 'y' });
    expect(await sm.apply(next, next[0]!.index)).toEqual([{ ok: true, prev: 'x' }]);
    expect(sm.size).toBe(1);
  });

  it('a retried write (same clientId, seq) gets its first reply and changes nothing', async () => {
    const { sm } = await fresh();
    const first = entries({ op: 'put', key: 'k', value: 'v1', clientId: 'c', seq: 1 });
    await sm.apply(first, first[0]!.index);
    const again = entries({ op: 'put', key: 'k', value: 'v2', clientId: 'c', seq: 1 });
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
    expect(copy.size).toBe(5000);
    expect(copy.appliedIndex()).toBe(image.index);
    expect(await copy.get('k0')).toBe('v0');
    expect(await copy.get('new')).toBeUndefined();
  });

  it('reopened, it has its keys, count, sessions and applied index back from LevelDB', async () => {
    const { sm, dir } = await fresh();
    const a = entries({ op: 'put', key: 'x', value: '1', clientId: 'c', seq: 7 }, { op: 'put', key: 'y', value: '2' });
    await sm.apply(a, a.at(-1)!.index);
    await sm.flush();
    const hash = await sm.stateHash();
    await sm.close();
    open.splice(open.indexOf(sm), 1);
    const back = await KvStateMachine.open(dir);
    open.push(back);
    expect(back.appliedIndex()).toBe(a.at(-1)!.index);
    expect(back.size).toBe(2);
    expect(await back.stateHash()).toBe(hash);
    const retry = entries({ op: 'put', key: 'x', value: 'other', clientId: 'c', seq: 7 });
    expect(await back.apply(retry, retry[0]!.index)).toEqual([{ ok: true, prev: null }]); // the session survived
    expect(await back.get('x')).toBe('1');
  });
});
