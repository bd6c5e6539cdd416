// The simulated file system under the real WAL (src/testing/fullnode/sim-fs.ts): what survives a crash, torn
// writes, directory-entry durability, failed syncs (crash-stop, never retried), corrupted reads; and the WAL on it.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import type { Entry } from '../../src/raft/core/types.js';
import { Wal } from '../../src/raft/wal/wal.js';
import { NodeClock, SimScheduler } from '../../src/testing/fullnode/scheduler.js';
import { noDiskFaults, SimFsDisk, type DiskFaults } from '../../src/testing/fullnode/sim-fs.js';
import { SeededRng } from '../../src/util/rng.js';

function setup(seed: number, faults: Partial<DiskFaults> = {}) {
  const sched = new SimScheduler();
  const disk = new SimFsDisk(sched, new SeededRng(seed), { ...noDiskFaults, ...faults });
  const clock = new NodeClock(sched, 0);
  /** Runs virtual time until `p` settles. */
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    const w = p.finally(() => { done = true; });
    w.catch(() => {});
    await sched.runUntil(sched.now + 60_000, () => done);
    expect(done).toBe(true);
    return p;
  };
  return { sched, disk, clock, settle };
}

const ent = (index: number, term = 1): Entry => ({ index, term, type: 'normal', data: Buffer.from(`entry-${index}-`.repeat(5)) } as Entry);
const dir = '/d/wal';

describe('SimFsDisk', () => {
  it('synced writes survive a crash; unsynced ones survive only as an in-order prefix', async () => {
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const { disk, clock, settle } = setup(seed);
      const fs = disk.mount(clock);
      fs.mkdirp('/d');
      const f = await settle(fs.open('/d/f', 'create'));
      await settle(f.write(Buffer.from('AAAA'), 0, 4, 0));
      await settle(f.datasync());
      await settle(fs.fsyncDir('/d'));
      await settle(f.write(Buffer.from('BBBB'), 0, 4, 4));
      await settle(f.write(Buffer.from('CCCC'), 0, 4, 8));
      expect(fs.readFile('/d/f').toString()).toBe('AAAABBBBCCCC'); // the page cache
      disk.crash();
      const after = disk.mount(clock).readFile('/d/f').toString();
      expect(['AAAA', 'AAAABBBB', 'AAAABBBBCCCC']).toContain(after);
      outcomes.add(after);
    }
    expect(outcomes.size).toBe(3);
  });

  it('a created and renamed file without a directory fsync may vanish at a crash; with one it stays', async () => {
    let vanished = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const { disk, clock, settle } = setup(seed);
      const fs = disk.mount(clock);
      fs.mkdirp('/d');
      const f = await settle(fs.open('/d/a.tmp', 'create'));
      await settle(f.write(Buffer.from('x'), 0, 1, 0));
      await settle(f.sync());
      await settle(f.close());
      await settle(fs.rename('/d/a.tmp', '/d/a'));
      const synced = seed % 2 === 0;
      if (synced) await settle(fs.fsyncDir('/d'));
      disk.crash();
      const names = disk.mount(clock).readdir('/d');
      if (synced) expect(names).toEqual(['a']);
      else if (!names.includes('a')) vanished++;
    }
    expect(vanished).toBeGreaterThan(0);
  });

  it('a crash can tear the last surviving write (a prefix of its bytes, at a sector boundary or anywhere, or some of its sectors)', async () => {
    const cuts = new Set<number>();
    let holes = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const { disk, clock, settle } = setup(seed, { tornWriteProbability: 1 });
      const fs = disk.mount(clock);
      fs.mkdirp('/d');
      const f = await settle(fs.open('/d/f', 'create'));
      await settle(fs.fsyncDir('/d'));
      void f.write(Buffer.alloc(2000, 7), 0, 2000, 100); // in flight at the crash
      disk.crash();
      const b = disk.mount(clock).readFile('/d/f');
      const len = b.byteLength === 0 ? 0 : b.byteLength - 100;
      if (len > 0 && len < 2000) cuts.add(len);
      // Out-of-order sectors: a missing (zero) piece with written bytes after it.
      const firstZero = b.indexOf(0, 100);
      if (firstZero !== -1 && b.subarray(firstZero).some((x) => x === 7)) holes++;
    }
    expect(disk0TornSeen(cuts)).toBe(true);
    expect(holes).toBeGreaterThan(0);
  });

  it('a write whose sync failed never comes back over a newer write of the same bytes that was synced (seed 20833)', async () => {
    // The model kept the failed write pending and a later power loss could replay it over the newer, durable bytes: a
    // stale batch in the middle of a WAL that had grown past it, refused at open as mid-log corruption.
    const outcomes = new Set<string>();
    for (let seed = 1; seed <= 40; seed++) {
      const { disk, clock, settle } = setup(seed, { fsyncFailProbability: 1 });
      let fs = disk.mount(clock);
      fs.mkdirp('/d');
      const f = await settle(fs.open('/d/f', 'create'));
      await settle(f.write(Buffer.from('AAAAAAAA'), 0, 8, 0));
      await settle(fs.fsyncDir('/d').catch(() => {}));
      await expect(settle(f.datasync())).rejects.toMatchObject({ code: 'EIO' }); // the process crash-stops
      disk.crash('process');
      disk.faults.fsyncFailProbability = 0;
      fs = disk.mount(clock); // restarted: the page cache still holds AAAAAAAA
      await settle(fs.fsyncDir('/d'));
      const g = await settle(fs.open('/d/f', 'append'));
      await settle(g.write(Buffer.from('BBBB'), 0, 4, 2));
      await settle(g.datasync());
      disk.crash('power');
      const after = disk.mount(clock).readFile('/d/f').toString('latin1');
      expect(after.slice(2, 6), `seed ${seed}: ${JSON.stringify(after)}`).toBe('BBBB');
      outcomes.add(after);
    }
    // The failed write's bytes outside the newer one may or may not have reached the disk.
    expect(outcomes.size).toBeGreaterThan(1);
  });

  it('a failed sync rejects with EIO; a write or sync of that file afterwards is recorded as a retry', async () => {
    const { disk, clock, settle } = setup(1, { fsyncFailProbability: 1 });
    const fs = disk.mount(clock);
    fs.mkdirp('/d');
    const f = await settle(fs.open('/d/f', 'create'));
    await settle(f.write(Buffer.from('x'), 0, 1, 0));
    await expect(settle(f.datasync())).rejects.toMatchObject({ code: 'EIO' });
    expect(disk.stats.failedFsyncs).toBe(1);
    disk.faults.fsyncFailProbability = 0;
    await settle(f.datasync());
    expect(disk.violations).toEqual([expect.stringMatching(/after a sync of it failed/)]);
  });
});

function disk0TornSeen(cuts: Set<number>): boolean {
  // Cuts both on sector boundaries (412 = 512 - 100, 924, ...) and elsewhere.
  const onSector = [...cuts].some((c) => (c + 100) % 512 === 0);
  const elsewhere = [...cuts].some((c) => (c + 100) % 512 !== 0);
  return onSector && elsewhere;
}

describe('the real WAL on the simulated file system', () => {
  async function run(seed: number, faults: Partial<DiskFaults>): Promise<{ lost: number; reopened: number }> {
    const { disk, clock, settle } = setup(seed, { maxWriteMs: 3, tornWriteProbability: 0.5, ...faults });
    const rng = new SeededRng(seed ^ 77);
    let acked = 0;
    let lost = 0;
    let reopened = 0;
    let next = 1;
    for (let round = 0; round < 6; round++) {
      const fs = disk.mount(clock);
      const w = await settle(Wal.open(dir, { fs, salt: () => disk.random32(), walSegmentBytes: 1024 }));
      reopened++;
      if (w.lastIndex() < acked) lost++;
      next = w.lastIndex() + 1;
      for (let k = 0; k < 10; k++) {
        const batch = [ent(next), ent(next + 1)];
        const p = w.save({ entries: batch, hardState: { term: 1, vote: null, commit: 0 } }, { sync: true });
        if (rng.nextInt(4) === 0) {
          // Crash with the save in flight (it may survive, torn or whole, or be lost).
          clock.kill();
          break;
        }
        await settle(p);
        next += 2;
        acked = next - 1;
      }
      disk.crash();
      clock.kill();
    }
    return { lost, reopened };
  }

  it('acknowledged (synced) saves survive every crash, with torn, lost and short writes and small rolling segments', async () => {
    for (let seed = 1; seed <= 15; seed++) {
      const r = await run(seed, { shortWriteProbability: 0.2 });
      expect({ seed, lost: r.lost }).toEqual({ seed, lost: 0 });
    }
  });

  it('control: with a lying fsync, acknowledged saves are lost after crashes', async () => {
    let lost = 0;
    for (let seed = 1; seed <= 15; seed++) {
      // A lying disk can lose the WAL's first segment altogether, or leave a damaged log: both count.
      lost += await run(seed, { unsafeLyingFsync: true }).then((r) => r.lost, (e: { code?: string }) => (e.code === ErrorCode.CORRUPT_LOG ? 1 : Promise.reject(e)));
    }
    expect(lost).toBeGreaterThan(0);
  });

  it('a failed O_DSYNC write stops the WAL (STORAGE_FAILED) and it never writes again', async () => {
    const { disk, clock, settle } = setup(3);
    const w = await settle(Wal.open(dir, { fs: disk.mount(clock), salt: () => disk.random32(), walSegmentBytes: 1024 }));
    await settle(w.save({ entries: [ent(1)] }, { sync: true }));
    disk.faults.fsyncFailProbability = 1;
    await expect(settle(w.save({ entries: [ent(2)] }, { sync: true }))).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    disk.faults.fsyncFailProbability = 0;
    await expect(settle(w.save({ entries: [ent(2)] }, { sync: true }))).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    expect(disk.violations).toEqual([]);
    disk.crash();
    const r = await settle(Wal.open(dir, { fs: disk.mount(clock), salt: () => disk.random32(), walSegmentBytes: 1024 }));
    expect(r.lastIndex()).toBeGreaterThanOrEqual(1);
    expect(r.lastIndex()).toBeLessThanOrEqual(2);
  });

  it('fsyncgate: a process restarted after a failed sync reads that batch from the page cache; open makes it durable, so a later power loss leaves no hole (simulator seed 2660)', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const { disk, clock, settle } = setup(seed);
      const open = () => settle(Wal.open(dir, { fs: disk.mount(clock), salt: () => disk.random32(), walSegmentBytes: 4096 }));
      const w = await open();
      await settle(w.save({ entries: [ent(1)] }, { sync: true }));
      disk.faults.fsyncFailProbability = 1;
      await expect(settle(w.save({ entries: [ent(2)] }, { sync: true }))).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      disk.faults.fsyncFailProbability = 0;
      disk.crash('process'); // crash-stop: the process exits, the page cache (with entry 2, marked clean) stays
      const r = await open();
      expect(r.lastIndex()).toBe(2); // read from the page cache
      await settle(r.save({ entries: [ent(3)] }, { sync: true })); // synced, so durable
      disk.crash('power'); // only synced data survives
      // Without the rewrite at open, entry 2 (never made durable) may be gone while 3 is kept: CORRUPT_LOG, a hole.
      const q = await open();
      expect({ seed, last: q.lastIndex() }).toEqual({ seed, last: 3 });
      expect(q.entries(1, 4, Infinity).map((e) => e.index)).toEqual([1, 2, 3]);
    }
  });

  it('a flipped byte is caught at open: CORRUPT_LOG, or (in the last batch) cut as a torn tail', async () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 40 && seen.size < 2; seed++) {
      const { disk, clock, settle } = setup(seed);
      const w = await settle(Wal.open(dir, { fs: disk.mount(clock), salt: () => disk.random32(), walSegmentBytes: 1024 }));
      for (let i = 1; i <= 12; i++) await settle(w.save({ entries: [ent(i)] }, { sync: true }));
      disk.crash();
      disk.corruptOnNextOpen();
      const fs = disk.mount(clock);
      const where = disk.injectCorruption(dir)!;
      expect(where).not.toBeNull();
      const outcome = await settle(Wal.open(dir, { fs, salt: () => disk.random32(), walSegmentBytes: 1024 })).then(
        (r) => (r.recovery.cutAt !== null && r.lastIndex() === 11 ? 'cut' : `opened at ${r.lastIndex()}`),
        (e: { code?: string }) => e.code ?? String(e),
      );
      expect(['cut', ErrorCode.CORRUPT_LOG]).toContain(outcome);
      seen.add(outcome);
    }
    expect(seen.size).toBe(2);
  });
});

describe('determinism of the simulated disk', () => {
  it('the simulator\'s disk, hosts and runner use no real file system, clock, timer or randomness', () => {
    const dir = path.resolve(import.meta.dirname, '../../src/testing/fullnode');
    const forbidden = [/from\s+'(node:)?fs(\/promises)?'/, /\bMath\.random\s*\(/, /\bDate\.now\s*\(/, /\bnew Date\s*\(/, /\bperformance\.now\s*\(/, /\b(setTimeout|setInterval)\s*\(/, /\brandomBytes\s*\(/];
    const hits: string[] = [];
    for (const name of ['sim-fs.ts', 'sim-master.ts', 'full-sim.ts', 'full-schedule.ts']) {
      const code = readFileSync(path.join(dir, name), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
      for (const line of code.split('\n')) if (forbidden.some((re) => re.test(line)) && !/clock\.set(Timeout|Interval)/.test(line)) hits.push(`${name}: ${line.trim()}`);
    }
    expect(hits).toEqual([]);
  });
});
