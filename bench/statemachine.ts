/**
 * bench/statemachine: the master state machine's throughput and footprint.
 *   - applied ops/s for PutStart+PutEnd pairs through MasterState.applyBatch (LevelDB, exactly-once seqs), from
 *     one session and from 256 sessions (waiting for each batch's write, and applying the next while it is written)
 *   - GetReplicaList queries/s (from memory, granting leases)
 *   - allocator ns per alloc and per free
 *   - heap bytes per object, snapshot and restore time at `--objects` (default 1M)
 *   - DrainSegments apply time at that size: the first (dropping a quarter of the objects) and a re-proposal; then at
 *     state version 2 another quarter in bounded commands as the leader plans them (longest apply, total)
 * Usage: node dist/bench/statemachine.js [--json] [--objects N] [--batch N]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MasterState } from '../src/statemachine/master-state.js';
import { planDrain } from '../src/statemachine/planners.js';
import { LeaseTable } from '../src/statemachine/leases.js';
import { OffsetAllocator } from '../src/statemachine/allocator.js';
import type { ApplyEntry } from '../src/statemachine/state-core.js';
import { SeededRng } from '../src/util/rng.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const args = process.argv.slice(2);
const json = args.includes('--json');
const argNum = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const objectsTarget = argNum('--objects', 1_000_000);
const batchEntries = argNum('--batch', 1000);
const segmentCount = 16;
const objectBytes = 64 * 1024;
const replicas = 1;
/** Sessions in the many-clients put case (the master bench runs 256 sessions). */
const sessionsMany = 256;

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** CPU seconds (user + system) of this process since `start`: less distorted than wall time on a shared box. */
function cpuSeconds(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

function log(msg: string): void {
  if (!json) process.stderr.write(msg + '\n');
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'mooring-bench-sm-'));
}

let index = 0;
/** Next exactly-once seq per client id. */
const seqs = new Map<string, number>();
const nextSeq = (clientId: string): number => {
  const s = (seqs.get(clientId) ?? 0) + 1;
  seqs.set(clientId, s);
  return s;
};
const now = 1_700_000_000_000;

async function mountSegments(ms: MasterState): Promise<void> {
  const entries: ApplyEntry[] = [];
  for (let i = 0; i < segmentCount; i++) {
    entries.push({
      index: ++index,
      timeMs: now,
      command: {
        type: 'MountSegment',
        clientId: `node-${i}`,
        segment: { id: `seg-${String(i).padStart(2, '0')}`, name: `seg-${i}`, base: 0, size: 2 ** 40, protocol: 'tcp', endpoint: `10.0.0.${i}:7000` },
      },
    });
  }
  await ms.applyBatch(entries);
}

/**
 * Applies `pairs` PutStart+PutEnd pairs (keys from `first`), in batches of batchEntries, from `clients` client
 * sessions in turn (each with its own seqs, as many master sessions would be); returns seconds.
 */
async function putPairs(ms: MasterState, first: number, pairs: number, clients = 1, waitForWrite = true): Promise<number> {
  const t0 = process.hrtime.bigint();
  let batch: ApplyEntry[] = [];
  for (let k = first; k < first + pairs; k++) {
    const key = `object/${k.toString(16).padStart(8, '0')}`;
    const clientId = clients === 1 ? 'bench-client' : `bench-client-${k % clients}`;
    batch.push({ index: ++index, timeMs: now + k, command: { type: 'PutStart', clientId, seq: nextSeq(clientId), key, size: objectBytes, replicaNum: replicas } });
    batch.push({ index: ++index, timeMs: now + k, command: { type: 'PutEnd', clientId, seq: nextSeq(clientId), key } });
    if (batch.length >= batchEntries) {
      // Not waiting for the write: still let the event loop turn (as a driver doing network I/O would), or no
      // write completion could run until the end.
      if (!waitForWrite) await new Promise<void>((r) => setImmediate(r));
      const res = await ms.applyBatch(batch, { waitForWrite });
      if (!res[0]!.ok) throw new Error(`apply failed: ${JSON.stringify(res[0])}`);
      batch = [];
    }
  }
  if (batch.length > 0) await ms.applyBatch(batch);
  if (!waitForWrite) await ms.flush(); // every queued write done (and synced) inside the measured time
  return seconds(t0);
}

function benchAllocator(): { allocNs: number; freeNs: number; steadyNs: number; cpuNsPerOp: number } {
  const cpu0 = process.cpuUsage();
  let opsDone = 0;
  const rng = new SeededRng(42);
  const n = 100_000;
  const rounds = 10;
  const sizes = Array.from({ length: n }, () => 64 + rng.nextInt(1 << 20));
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const a = new OffsetAllocator(2 ** 40, 64);
  const offs = new Float64Array(n);
  let allocTotal = 0n;
  let freeTotal = 0n;
  // Fill a 1 TiB segment with 100k objects (64 B-1 MiB), then free them all in a shuffled order; repeat.
  for (let r = 0; r < rounds; r++) {
    let t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) offs[i] = a.alloc(sizes[i]!);
    allocTotal += process.hrtime.bigint() - t0;
    t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) a.free(offs[order[i]!]!);
    freeTotal += process.hrtime.bigint() - t0;
  }
  // Steady state: a fragmented segment kept at ~90% full with random free+alloc pairs.
  const b = new OffsetAllocator(20_000 * 600 * 1024, 64);
  const live: number[] = [];
  for (;;) {
    const off = b.alloc(64 + rng.nextInt(1 << 20));
    if (off < 0 || b.allocatedBytes > 0.9 * b.capacityBytes) break;
    live.push(off);
  }
  const ops = 1_000_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const j = rng.nextInt(live.length);
    b.free(live[j]!);
    const off = b.alloc(64 + rng.nextInt(1 << 20));
    if (off >= 0) live[j] = off;
    else {
      live[j] = live[live.length - 1]!;
      live.pop();
    }
  }
  const steadyNs = Number(process.hrtime.bigint() - t0) / (2 * ops);
  opsDone = 2 * n * rounds + 2 * ops + live.length;
  return {
    allocNs: Number(allocTotal) / (n * rounds),
    freeNs: Number(freeTotal) / (n * rounds),
    steadyNs,
    cpuNsPerOp: (cpuSeconds(cpu0) * 1e9) / opsDone,
  };
}

async function main(): Promise<void> {
  const dirs: string[] = [];
  try {
    // 1. Applied put pairs: a warm-up, then a measured run on a fresh store.
    const d1 = await tempDir();
    dirs.push(d1);
    const ms = await MasterState.open(d1);
    await mountSegments(ms);
    await putPairs(ms, 0, 20_000);
    const measuredPairs = 100_000;
    const putCpu0 = process.cpuUsage();
    const putSec = await putPairs(ms, 20_000, measuredPairs);
    const putCpuSec = cpuSeconds(putCpu0);
    const putOpsPerSec = (2 * measuredPairs) / putSec;
    log(`put pairs: ${(2 * measuredPairs).toLocaleString()} entries in ${putSec.toFixed(2)} s`);
    // Same with many sessions: each batch dirties up to sessionsMany client records and their reply windows.
    const manyCpu0 = process.cpuUsage();
    const manySec = await putPairs(ms, 20_000 + measuredPairs, measuredPairs, sessionsMany);
    const manyCpuSec = cpuSeconds(manyCpu0);
    log(`put pairs, ${sessionsMany} sessions: ${(2 * measuredPairs).toLocaleString()} entries in ${manySec.toFixed(2)} s`);
    // Same, applying the next batch while LevelDB writes the last (applyBatch {waitForWrite: false}).
    const overlapCpu0 = process.cpuUsage();
    const overlapSec = await putPairs(ms, 20_000 + 2 * measuredPairs, measuredPairs, sessionsMany, false);
    const overlapCpuSec = cpuSeconds(overlapCpu0);

    // 2. GetReplicaList from memory, granting leases.
    const leases = new LeaseTable();
    const getN = 1_000_000;
    const rng = new SeededRng(7);
    const keyCount = 20_000 + 3 * measuredPairs;
    const t0 = process.hrtime.bigint();
    const getCpu0 = process.cpuUsage();
    for (let i = 0; i < getN; i++) {
      const k = rng.nextInt(keyCount);
      const r = ms.getReplicaList(`object/${k.toString(16).padStart(8, '0')}`, now + i, leases);
      if (!r.ok) throw new Error('get failed');
    }
    const getPerSec = getN / seconds(t0);
    const getCpuSec = cpuSeconds(getCpu0);
    await ms.close();

    // 3. Allocator.
    const alloc = benchAllocator();
    log(`allocator: ${alloc.allocNs.toFixed(0)} ns/alloc, ${alloc.freeNs.toFixed(0)} ns/free`);

    // 4. Footprint, snapshot and restore at objectsTarget objects.
    gc();
    const heap0 = process.memoryUsage().heapUsed;
    const d2 = await tempDir();
    dirs.push(d2);
    const big = await MasterState.open(d2);
    await mountSegments(big);
    const fillStart = process.hrtime.bigint();
    await putPairs(big, 0, objectsTarget);
    const fillSec = seconds(fillStart);
    gc();
    const heapBytesPerObject = (process.memoryUsage().heapUsed - heap0) / objectsTarget;
    log(`filled ${objectsTarget.toLocaleString()} objects in ${fillSec.toFixed(1)} s; ${heapBytesPerObject.toFixed(0)} heap bytes/object`);
    await big.flush();
    let t = process.hrtime.bigint();
    let cpu0 = process.cpuUsage();
    const chunks: Uint8Array[] = [];
    let snapshotBytes = 0;
    for await (const c of big.createSnapshot()) {
      chunks.push(c);
      snapshotBytes += c.length;
    }
    const snapshotSec = seconds(t);
    const snapshotCpuSec = cpuSeconds(cpu0);
    log(`snapshot: ${chunks.length} chunks, ${(snapshotBytes / 1e6).toFixed(1)} MB in ${snapshotSec.toFixed(2)} s`);
    const sourceHash = big.stateHash();
    await big.close();
    gc();
    const d3 = await tempDir();
    dirs.push(d3);
    t = process.hrtime.bigint();
    cpu0 = process.cpuUsage();
    const restored = await MasterState.restore(
      d3,
      (async function* () {
        yield* chunks;
      })(),
    );
    const restoreSec = seconds(t);
    const restoreCpuSec = cpuSeconds(cpu0);
    log(`restore: ${restoreSec.toFixed(2)} s`);
    t = process.hrtime.bigint();
    const equal = restored.stateHash() === sourceHash;
    const hashSec = seconds(t);

    // 5. A graceful drain of a quarter of the segments at objectsTarget objects: the first DrainSegments drops their
    // objects; the leader re-proposes it every second while a skipped (leased) key keeps the segments DRAINING.
    const drainIds = Array.from({ length: segmentCount / 4 }, (_, i) => `seg-${String(i).padStart(2, '0')}`);
    let next = restored.appliedIndex;
    const applyOne = async (command: ApplyEntry['command']): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const [r] = await restored.applyBatch([{ index: ++next, timeMs: now, command }], { waitForWrite: false });
      if (!r!.ok) throw new Error(`${command.type} failed: ${JSON.stringify(r)}`);
      return seconds(t0) * 1000;
    };
    for (const id of drainIds) await applyOne({ type: 'UnmountSegment', clientId: `node-${Number(id.slice(4))}`, segmentId: id, graceful: true });
    const leased = [...restored.objects.values()].find((o) => o.replicas.some((r) => r.segmentId === drainIds[0]))!.key;
    const drainFirstMs = await applyOne({ type: 'DrainSegments', segmentIds: drainIds, skipKeys: [leased] });
    const drainedObjects = objectsTarget - restored.objects.size;
    const drainAgainMs = await applyOne({ type: 'DrainSegments', segmentIds: drainIds, skipKeys: [leased] });
    await restored.flush();
    log(`drain: ${drainedObjects.toLocaleString()} objects dropped in ${drainFirstMs.toFixed(0)} ms; re-proposed: ${drainAgainMs.toFixed(1)} ms`);
    // The same at state version 2: the next quarter of the segments, in bounded commands as the leader plans them.
    let boundedCommands = 0;
    let boundedMaxMs = 0;
    let boundedTotalMs = 0;
    const boundedIds = Array.from({ length: segmentCount / 4 }, (_, i) => `seg-${String(segmentCount / 4 + i).padStart(2, '0')}`);
    const objectsBefore = restored.objects.size;
    if (typeof (restored as { stateVersion?: number }).stateVersion === 'number') {
      await applyOne({ type: 'SetStateVersion', version: 2 } as ApplyEntry['command']);
      for (const id of boundedIds) await applyOne({ type: 'UnmountSegment', clientId: `node-${Number(id.slice(4))}`, segmentId: id, graceful: true });
      const noLeases = new LeaseTable();
      for (;;) {
        const plan = planDrain(restored, noLeases, now);
        if (plan === null) break;
        const ms = await applyOne(plan);
        boundedCommands++;
        boundedMaxMs = Math.max(boundedMaxMs, ms);
        boundedTotalMs += ms;
        if ((plan.keys?.length ?? 0) === 0) break;
      }
      await restored.flush();
      log(`bounded drain: ${(objectsBefore - restored.objects.size).toLocaleString()} objects in ${boundedCommands} commands, longest ${boundedMaxMs.toFixed(1)} ms, ${boundedTotalMs.toFixed(0)} ms in all`);
    }
    const boundedDropped = objectsBefore - restored.objects.size;
    await restored.close();

    const result = {
      bench: 'statemachine',
      date: new Date().toISOString(),
      machine: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      node: process.version,
      loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
      batchEntries,
      putPairEntriesApplied: 2 * measuredPairs,
      appliedOpsPerSecPutPairs: Math.round(putOpsPerSec),
      appliedOpsPerCpuSecPutPairs: Math.round((2 * measuredPairs) / putCpuSec),
      sessionsMany,
      appliedOpsPerSecPutPairsManySessions: Math.round((2 * measuredPairs) / manySec),
      appliedOpsPerCpuSecPutPairsManySessions: Math.round((2 * measuredPairs) / manyCpuSec),
      appliedOpsPerSecPutPairsManySessionsWritesOverlapped: Math.round((2 * measuredPairs) / overlapSec),
      appliedOpsPerCpuSecPutPairsManySessionsWritesOverlapped: Math.round((2 * measuredPairs) / overlapCpuSec),
      getReplicaListPerSec: Math.round(getPerSec),
      getReplicaListPerCpuSec: Math.round(getN / getCpuSec),
      allocatorNsPerAlloc: Math.round(alloc.allocNs),
      allocatorNsPerFree: Math.round(alloc.freeNs),
      allocatorNsSteadyFragmented: Math.round(alloc.steadyNs),
      allocatorCpuNsPerOpAllCases: Math.round(alloc.cpuNsPerOp),
      objects: objectsTarget,
      fillSec: Number(fillSec.toFixed(2)),
      heapBytesPerObject: Math.round(heapBytesPerObject),
      snapshotBytes,
      snapshotChunks: chunks.length,
      snapshotSec: Number(snapshotSec.toFixed(2)),
      snapshotCpuSec: Number(snapshotCpuSec.toFixed(2)),
      restoreSec: Number(restoreSec.toFixed(2)),
      restoreCpuSec: Number(restoreCpuSec.toFixed(2)),
      snapshotPlusRestoreSec: Number((snapshotSec + restoreSec).toFixed(2)),
      restoredHashEqual: equal,
      stateHashSec: Number(hashSec.toFixed(2)),
      drainSegments: drainIds.length,
      drainFirstObjectsDropped: drainedObjects,
      drainFirstMs: Math.round(drainFirstMs),
      drainReproposedMs: Number(drainAgainMs.toFixed(1)),
      boundedDrainObjectsDropped: boundedDropped,
      boundedDrainCommands: boundedCommands,
      boundedDrainLongestApplyMs: Number(boundedMaxMs.toFixed(1)),
      boundedDrainTotalApplyMs: Math.round(boundedTotalMs),
    };
    if (json) {
      console.log(JSON.stringify(result));
    } else {
      const rows: Array<[string, string, string]> = [
        ['applied ops/s (PutStart+PutEnd, batches of ' + batchEntries + ')', result.appliedOpsPerSecPutPairs.toLocaleString(), '≥ 100,000'],
        ['  same, per CPU second', result.appliedOpsPerCpuSecPutPairs.toLocaleString(), '-'],
        [`applied ops/s, same from ${sessionsMany} sessions`, result.appliedOpsPerSecPutPairsManySessions.toLocaleString(), '≥ 100,000'],
        ['  same, per CPU second', result.appliedOpsPerCpuSecPutPairsManySessions.toLocaleString(), '-'],
        ['  same, next batch applied while the last is written', result.appliedOpsPerSecPutPairsManySessionsWritesOverlapped.toLocaleString(), '≥ 100,000'],
        ['    same, per CPU second', result.appliedOpsPerCpuSecPutPairsManySessionsWritesOverlapped.toLocaleString(), '-'],
        ['GetReplicaList/s (memory, lease granted)', result.getReplicaListPerSec.toLocaleString(), '-'],
        ['  same, per CPU second', result.getReplicaListPerCpuSec.toLocaleString(), '-'],
        ['allocator ns/alloc (100k live, 64 B-1 MiB)', String(result.allocatorNsPerAlloc), '≤ 500'],
        ['allocator ns/free (shuffled)', String(result.allocatorNsPerFree), '-'],
        ['allocator ns/op, 90% full fragmented', String(result.allocatorNsSteadyFragmented), '≤ 500'],
        ['allocator CPU ns/op, all cases', String(result.allocatorCpuNsPerOpAllCases), '≤ 500'],
        [`heap bytes/object at ${objectsTarget.toLocaleString()}`, String(result.heapBytesPerObject), '-'],
        ['snapshot s (CPU s)', `${result.snapshotSec} (${result.snapshotCpuSec})`, '-'],
        ['restore s (CPU s)', `${result.restoreSec} (${result.restoreCpuSec})`, '-'],
        ['snapshot + restore s', String(result.snapshotPlusRestoreSec), '< 10'],
        ['restored state hash equal', String(result.restoredHashEqual), 'true'],
        [`DrainSegments of ${result.drainSegments} of ${segmentCount} segments: first apply ms (objects dropped)`, `${result.drainFirstMs} (${result.drainFirstObjectsDropped.toLocaleString()})`, '-'],
        ['  same, re-proposed while a leased key keeps them DRAINING: apply ms', String(result.drainReproposedMs), '< 5'],
        [`  at state version 2, the next ${segmentCount / 4} segments (${result.boundedDrainObjectsDropped.toLocaleString()} objects): bounded commands, longest apply ms, all ms`, `${result.boundedDrainCommands}, ${result.boundedDrainLongestApplyMs}, ${result.boundedDrainTotalApplyMs}`, 'longest < 50'],
        ['load average (1 min) at the end', String(result.loadAverage1m), '-'],
      ];
      console.log('| measure | value | target |\n|---|---:|---:|');
      for (const [a, b, c] of rows) console.log(`| ${a} | ${b} | ${c} |`);
    }
  } finally {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  }
}

await main();
