/**
 * bench/dr: disaster recovery.
 *   1. Backup + restore of `--objects` objects (default 1M): a state is built offline (MasterState), turned into a
 *      seed backup file and restored into a one-member cluster; that master serves `MasterClient.backup` (timed:
 *      the real RPC path, leader barrier → snapshot stream → file with checksum), and the file is restored into a
 *      fresh data dir (timed: verify the checksum, write the log's snapshot point, rebuild the state store).
 *   2. Repair throughput: 3 in-process masters, 3 storage clients (zones z1..z3, real engine), `--repair-objects`
 *      objects of `--repair-bytes` with 2 replicas; one storage client unmounts (its replicas are gone at once) and
 *      the time until no object is under-replicated gives objects/s and bytes/s, at each `bytesPerSecond` limit.
 * Usage: npm run bench:dr -- [--json] [--objects N] [--repair-objects N] [--repair-bytes N] [--no-append]
 */
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { finished } from 'node:stream/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MasterClient } from '../src/master/client.js';
import { parseConfig } from '../src/master/config.js';
import { silentLogger } from '../src/master/logger.js';
import { MasterNode } from '../src/master/master-node.js';
import { writeBackup } from '../src/master/backup.js';
import { backupVersion } from '../src/master/backup-format.js';
import { restoreDataDir } from '../src/master/backup-restore.js';
import { MasterStateMachine } from '../src/master/state-adapter.js';
import { MasterState } from '../src/statemachine/master-state.js';
import { needsRepair } from '../src/statemachine/objects.js';
import type { ApplyEntry } from '../src/statemachine/state-core.js';
import { StoreClient } from '../src/store/index.js';
import { freePorts } from '../src/testing/ports.js';
import { appendResults, machineInfo, parseArgs, round, table } from './lib/report.js';

const args = parseArgs();
const objects = args.num('objects', 1_000_000);
const repairObjects = args.num('repair-objects', 2_000);
const repairBytes = args.num('repair-bytes', 16 * 1024);
const repairLimitsBytesPerSec = [4 * 1024 * 1024, 64 * 1024 * 1024];
const log = (m: string): void => {
  if (!args.json) process.stderr.write(m + '\n');
};
const secondsSince = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e9;
/** CPU seconds (user + system) of this process since `c`: less distorted than wall time on a shared box. */
const cpuSince = (c: NodeJS.CpuUsage): number => {
  const u = process.cpuUsage(c);
  return (u.user + u.system) / 1e6;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Index slots per log entry of the master's adapter (state index = log index × 4096 + slot). */
const slots = 4096;

async function buildState(dir: string, n: number): Promise<MasterState> {
  const ms = await MasterState.open(dir);
  // Log entry e carries one command (last slot): the state's applied index then maps back to log index e.
  let entry = 1;
  const at = (): number => ++entry * slots + slots - 1;
  const seg = (i: number): ApplyEntry => ({ index: at(), timeMs: 1, command: { type: 'MountSegment', clientId: `node-${i}`, segment: { id: `seg-${i}`, name: `seg-${i}`, base: 0, size: 2 ** 40, protocol: 'tcp', endpoint: `10.0.0.${i}:7000` } } });
  await ms.applyBatch([0, 1, 2, 3].map(seg));
  let batch: ApplyEntry[] = [];
  for (let k = 0; k < n; k++) {
    const key = `object/${k.toString(16).padStart(8, '0')}`;
    batch.push({ index: at(), timeMs: 2, command: { type: 'PutStart', clientId: 'bench', key, size: 65_536, replicaNum: 2 } });
    batch.push({ index: at(), timeMs: 2, command: { type: 'PutEnd', clientId: 'bench', key } });
    if (batch.length >= 2_000) {
      await new Promise<void>((r) => setImmediate(r));
      await ms.applyBatch(batch, { waitForWrite: false });
      batch = [];
    }
  }
  if (batch.length > 0) await ms.applyBatch(batch);
  await ms.flush();
  return ms;
}

/**
 * Builds the state offline, measures the state machine's own snapshot + restore (the baseline), writes the seed
 * backup file. Its own function so that none of these 1M-object states stays reachable during the measurements.
 */
async function prepare(root: string): Promise<{ seed: string; smSnapshotSec: number; smSnapshotCpuSec: number; smRestoreSec: number; smRestoreCpuSec: number }> {
  let t = process.hrtime.bigint();
  const built = await buildState(path.join(root, 'built'), objects);
  log(`built ${objects.toLocaleString()} objects offline in ${round(secondsSince(t), 1)} s`);
  // Baseline under the same load: the state machine's own snapshot stream and restore, in memory.
  let cpu0 = process.cpuUsage();
  t = process.hrtime.bigint();
  const chunks: Uint8Array[] = [];
  for await (const c of built.createSnapshot()) chunks.push(c);
  const smSnapshotSec = secondsSince(t);
  const smSnapshotCpuSec = cpuSince(cpu0);
  cpu0 = process.cpuUsage();
  t = process.hrtime.bigint();
  const again = await MasterState.restore(path.join(root, 'baseline'), (async function* () { yield* chunks; })());
  const smRestoreSec = secondsSince(t);
  const smRestoreCpuSec = cpuSince(cpu0);
  await again.close();
  chunks.length = 0;
  log(`baseline: state machine snapshot ${round(smSnapshotSec, 2)} s (${round(smSnapshotCpuSec, 2)} CPU s), restore ${round(smRestoreSec, 2)} s (${round(smRestoreCpuSec, 2)} CPU s)`);
  const seed = path.join(root, 'seed.mbak');
  const out = createWriteStream(seed);
  const index = new MasterStateMachine(built).appliedIndex();
  await writeBackup({ version: backupVersion, clusterId: 'seed', clusterUid: null, index, voters: ['b1'], learners: [], peers: [], objectCount: built.objects.size, createdAtMs: Date.now(), takenFrom: 'bench' }, built.createSnapshot(), out);
  out.end();
  await finished(out);
  await built.close();
  return { seed, smSnapshotSec, smSnapshotCpuSec, smRestoreSec, smRestoreCpuSec };
}

async function backupRestore(root: string): Promise<Record<string, number>> {
  const ports = await freePorts(2);
  const cfg = (dataDir: string) => parseConfig({
    nodeId: 'b1', clusterId: 'bench', dataDir,
    listen: { host: '127.0.0.1', raftPort: ports[0]!, rpcPort: ports[1]!, httpPort: 0 },
    peers: [{ id: 'b1', host: '127.0.0.1', raftPort: ports[0]!, rpcPort: ports[1]! }],
    // The built state's storage clients never ping: keep them (and their 1M objects) for the whole run.
    clientTtlMs: 3_600_000,
  });
  const { seed, smSnapshotSec, smSnapshotCpuSec, smRestoreSec, smRestoreCpuSec } = await prepare(root);
  let t = process.hrtime.bigint();
  await restoreDataDir({ file: seed, config: cfg(path.join(root, 'b1')) });

  const node = await MasterNode.start(cfg(path.join(root, 'b1')), { logger: silentLogger(), http: false });
  const client = new MasterClient({ endpoints: [`127.0.0.1:${ports[1]}`], clusterId: 'bench', retry: { maxAttempts: 50, initialBackoffMs: 50, maxBackoffMs: 200 } });
  try {
    while (!node.isLeader) await sleep(20);
    // Let the fresh store's background compaction and the load's garbage settle: they would bill the backup.
    await sleep(args.num('settle-ms', 10_000));
    const file = path.join(root, 'backup.mbak');
    const w = createWriteStream(file);
    t = process.hrtime.bigint();
    let cpu = process.cpuUsage();
    const r = await client.backup(w);
    w.end();
    await finished(w);
    const backupSec = secondsSince(t);
    const backupCpuSec = cpuSince(cpu); // client and master: both in this process
    log(`backup: ${r.header.objectCount.toLocaleString()} objects, ${round(r.bytes / 1e6, 1)} MB in ${round(backupSec, 2)} s`);
    // Restore runs where no master is (like `mooring restore` on a stopped member): not beside this one's heap.
    await client.close();
    await node.stop();
    t = process.hrtime.bigint();
    cpu = process.cpuUsage();
    const res = await restoreDataDir({ file, config: cfg(path.join(root, 'restored')) });
    const restoreSec = secondsSince(t);
    const restoreCpuSec = cpuSince(cpu);
    log(`restore: ${res.objectCount.toLocaleString()} objects in ${round(restoreSec, 2)} s`);
    if (res.objectCount !== objects) throw new Error(`restored ${res.objectCount} objects, expected ${objects}`);
    return {
      smSnapshotSec: round(smSnapshotSec, 2), smSnapshotCpuSec: round(smSnapshotCpuSec, 2), smRestoreSec: round(smRestoreSec, 2), smRestoreCpuSec: round(smRestoreCpuSec, 2),
      objects, fileMB: round(statSync(file).size / 1e6, 1), backupSec: round(backupSec, 2), backupCpuSec: round(backupCpuSec, 2),
      restoreSec: round(restoreSec, 2), restoreCpuSec: round(restoreCpuSec, 2), totalSec: round(backupSec + restoreSec, 2), totalCpuSec: round(backupCpuSec + restoreCpuSec, 2),
    };
  } finally {
    await client.close();
    await node.stop();
  }
}

async function repairRun(root: string, bytesPerSecond: number): Promise<Record<string, number>> {
  const ports = await freePorts(6);
  const peers = [0, 1, 2].map((i) => ({ id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 2]!, rpcPort: ports[i * 2 + 1]! }));
  const nodes = await Promise.all(peers.map((p) => MasterNode.start(parseConfig({
    nodeId: p.id, dataDir: path.join(root, `r-${bytesPerSecond}-${p.id}`),
    listen: { host: '127.0.0.1', raftPort: p.raftPort, rpcPort: p.rpcPort, httpPort: 0 }, peers,
    raft: { tickMs: 20 }, placement: { strategy: 'zone-spread' },
    peerToken: 'bench-dr-peer-token', // peers authenticate (a multi-node master refuses to start otherwise)
  }), { logger: silentLogger(), http: false, repair: { bytesPerSecond, maxInFlight: 64 } })));
  const endpoints = peers.map((p) => `127.0.0.1:${p.rpcPort}`);
  const stores: StoreClient[] = [];
  try {
    for (let z = 1; z <= 3; z++) {
      stores.push(await StoreClient.create({ masters: endpoints, memory: { size: 256 << 20 }, zone: `z${z}`, pingIntervalMs: 100, stagingSlotBytes: 256 << 10, stagingSlots: 16 }));
    }
    const writer = stores[0]!;
    const payload = Buffer.alloc(repairBytes, 7);
    for (let i = 0; i < repairObjects; i += 64) {
      await Promise.all(Array.from({ length: Math.min(64, repairObjects - i) }, (_, j) => writer.put(`r${i + j}`, payload, { replicas: 2 })));
    }
    const leader = (): MasterNode => nodes.find((n) => n.isLeader) ?? nodes[0]!;
    const under = (): number => {
      const st = leader().masterState;
      let n = 0;
      for (const o of st.objects.values()) if (needsRepair(o, st.segments)) n++;
      return n;
    };
    // Lose zone z3's node: its replicas go at once (forced unmount), the others repair onto... z1 and z2 only hold
    // one replica each of the objects that had one in z3; the repair copies between them.
    const victim = stores.pop()!;
    await victim.close({ unmount: true });
    await sleep(50);
    const lost = under();
    const t = process.hrtime.bigint();
    while (under() > 0) {
      if (secondsSince(t) > 600) throw new Error('repair did not finish within 600 s');
      await sleep(20);
    }
    const sec = secondsSince(t);
    const stored = repairBytes + 12; // payload + trailer
    log(`repair at ${bytesPerSecond / 2 ** 20} MiB/s: ${lost} objects in ${round(sec, 2)} s`);
    return { limitMiBps: bytesPerSecond / 2 ** 20, objects: lost, objectBytes: stored, seconds: round(sec, 2), objectsPerSec: round(lost / sec, 0), MiBps: round((lost * stored) / sec / 2 ** 20, 1) };
  } finally {
    for (const s of stores) await s.close().catch(() => {});
    await Promise.all(nodes.map((n) => n.stop()));
  }
}

async function main(): Promise<void> {
  const m = machineInfo();
  const root = mkdtempSync(path.join(tmpdir(), 'mooring-bench-dr-'));
  try {
    const br = await backupRestore(root);
    const repairs: Array<Record<string, number>> = [];
    if (!args.has('--no-repair')) for (const limit of repairLimitsBytesPerSec) repairs.push(await repairRun(root, limit));
    const result = { bench: 'dr', machine: m, backupRestore: br, repairs };
    if (args.json) {
      process.stdout.write(JSON.stringify(result) + '\n');
    } else {
      const body = [
        `Backup + restore (\`MasterClient.backup\` over RPC from a one-member cluster, then \`restoreDataDir\`):`,
        '',
        table(['objects', 'file MB', 'backup s (CPU s)', 'restore s (CPU s)', 'total s (CPU s)', 'goal'], [[br.objects!, br.fileMB!, `${br.backupSec} (${br.backupCpuSec})`, `${br.restoreSec} (${br.restoreCpuSec})`, `${br.totalSec} (${br.totalCpuSec})`, '< 10 s']]),
        '',
        `Baseline in the same run (state machine alone, in memory): snapshot stream ${br.smSnapshotSec} s (${br.smSnapshotCpuSec} CPU s), restore ${br.smRestoreSec} s (${br.smRestoreCpuSec} CPU s).`,
        '',
        `Repair (3 in-process masters, 3 storage clients in 3 zones, ${repairObjects} objects × ${repairBytes} B with 2 replicas; one client unmounts; time until none is under-replicated; maxInFlight 64):`,
        '',
        table(['limit MiB/s', 'objects repaired', 'seconds', 'objects/s', 'MiB/s'], repairs.map((r) => [r.limitMiBps!, r.objects!, r.seconds!, r.objectsPerSec!, r.MiBps!])),
      ].join('\n');
      process.stdout.write(body + '\n');
      if (!args.has('--no-append')) appendResults('dr (backup/restore, repair)', `node dist/bench/dr.js --objects ${objects}`, body, m);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
