/**
 * Backup under failover in the full-node simulator: a backup client that, at seeded virtual times during the
 * fault phase, takes an online backup the way production does (backup.ts: the node believing it leads, its read
 * barrier `raft.read()`, then the state machine's snapshot image at its applied index, written with the header
 * and checksum trailer by `writeBackup`, in memory). At the end of the run each backup is restored through the
 * production restore path (`verifyBackupBytes`, `MasterState.restoreIntoStore` on a memory store, the header
 * index check) and checked: it restores, every client write acknowledged before the backup call started is in
 * its exactly-once table, and its index is at most the cluster's final commit.
 *
 * `mode: 'stale-follower'` is the control: the "backup" is taken from a follower without the barrier, which can
 * miss acknowledged writes, and the check must say so.
 */
import { Writable } from 'node:stream';
import type { Level } from 'level';
import { MemoryLevel } from 'memory-level';
import { backupHeaderOf, writeBackup } from '../../master/backup.js';
import { checkRestoredIndex, verifyBackupBytes } from '../../master/backup-restore.js';
import { MasterStateMachine } from '../../master/state-adapter.js';
import { MasterState } from '../../statemachine/master-state.js';
import { StateStore } from '../../statemachine/store.js';
import type { SeededRng } from '../../util/rng.js';
import { missingAcked } from './checks.js';
import { randInt } from './rand.js';
import type { SimScheduler } from './scheduler.js';
import type { SimMasterHost } from './sim-master.js';
import { simEpochMs, type AckedWrite, type Workload } from './workload.js';

export interface TakenBackup {
  /** Virtual time the successful backup call started. */
  atMs: number;
  takenFrom: string;
  /** The backup file's bytes. */
  bytes: Buffer;
  /** Client writes acknowledged before the backup call started. */
  ackedBefore: AckedWrite[];
}

export type BackupMode = 'normal' | 'stale-follower';

/** A barrier call gives up after this long (virtual ms) and the client retries, on the then newest leader. */
export const simBackupTimeoutMs = 5_000;
const maxBackupAttempts = 20;

export class SimBackupClient {
  readonly taken: TakenBackup[] = [];
  attempts = 0;
  private running = 0;

  constructor(
    private readonly sched: SimScheduler,
    private readonly rng: SeededRng,
    private readonly hosts: SimMasterHost[],
    private readonly workload: Workload,
    readonly mode: BackupMode = 'normal',
  ) {}

  get idle(): boolean {
    return this.running === 0;
  }

  /** Takes one backup, retrying (another node, later) until one succeeds or the attempts run out. */
  async take(): Promise<boolean> {
    this.running++;
    try {
      for (let i = 0; i < maxBackupAttempts; i++) {
        this.attempts++;
        const host = this.pick();
        if (host !== null && await this.attempt(host)) return true;
        await this.sleep(50 + randInt(this.rng, 200));
      }
      return false;
    } finally {
      this.running--;
    }
  }

  private pick(): SimMasterHost | null {
    const live = this.hosts.filter((h) => h.up && h.state !== null);
    if (this.mode === 'stale-follower') {
      // The broken variant: the follower that has applied least, no barrier.
      const followers = live.filter((h) => !h.raft!.isLeader).sort((a, b) => a.raft!.appliedIndex - b.raft!.appliedIndex);
      return followers[0] ?? null;
    }
    // As a client's endpoint list does: the newest node that believes it leads (a deposed one may still think so).
    return live.filter((h) => h.raft!.isLeader).sort((a, b) => b.raft!.currentTerm - a.raft!.currentTerm)[0] ?? null;
  }

  private async attempt(host: SimMasterHost): Promise<boolean> {
    const raft = host.raft!;
    const state = host.state!;
    const atMs = this.sched.now;
    const ackedBefore = this.workload.acked.slice();
    const alive = (): boolean => host.raft === raft && host.state === state;
    if (this.mode === 'normal') {
      // BackupService's barrier in master-node.ts: requireLeader, then raft.read().
      if (!raft.isLeader) return false;
      const timeout = new Promise<false>((resolve) => this.sched.after(simBackupTimeoutMs, () => resolve(false)));
      const ok = await Promise.race([raft.read().then(() => true, () => false), timeout]);
      if (!ok || !alive()) return false;
    }
    // BackupService.begin: one image at the applied index, taken synchronously after the barrier.
    const snap = new MasterStateMachine(state).snapshot();
    const header = backupHeaderOf({
      members: () => raft.members(),
      peer: () => undefined,
      objectCount: () => state.objects.size,
      clusterId: 'sim',
      clusterUid: null,
      nodeId: host.id,
    }, snap.index, simEpochMs + this.sched.now);
    const parts: Buffer[] = [];
    const out = new Writable({
      highWaterMark: 1 << 30,
      write(chunk: Buffer, _enc, cb) { parts.push(chunk); cb(); },
    });
    try {
      await writeBackup(header, snap.chunks, out);
    } catch {
      return false;
    }
    // The session lives on the node that began it: a crash while streaming fails the backup.
    if (!alive()) return false;
    this.taken.push({ atMs, takenFrom: host.id, bytes: Buffer.concat(parts), ackedBefore });
    return true;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.sched.after(ms, resolve));
  }
}

/** Restores each backup through the production path into a memory store and checks it; returns the violations. */
export async function checkBackups(backups: readonly TakenBackup[], finalCommit: number): Promise<string[]> {
  const violations: string[] = [];
  for (const [i, b] of backups.entries()) {
    const name = `backup ${i + 1} (from ${b.takenFrom} at ${Math.round(b.atMs)} ms)`;
    const db = new MemoryLevel<string, Buffer>({ keyEncoding: 'utf8', valueEncoding: 'buffer' });
    const store = await StateStore.openDb(db as unknown as Level<string, Buffer>);
    try {
      const v = verifyBackupBytes(b.bytes);
      const body = b.bytes.subarray(v.bodyStart, v.bodyEnd);
      const restored = await MasterState.restoreIntoStore(store, (async function* () { yield body; })());
      checkRestoredIndex(v.header, restored.appliedIndex);
      if (v.header.index > finalCommit) violations.push(`${name}: at index ${v.header.index}, past the cluster's final commit ${finalCommit}`);
      // As a master started on the restored data dir loads it.
      const state = await MasterState.openStore(store, `sim-restore:${i + 1}`);
      const lost = missingAcked(state, b.ackedBefore);
      if (lost.length > 0) violations.push(`${name} at index ${v.header.index}: ${lost.length} write(s) acknowledged before it began are missing, e.g. ${lost[0]!.clientId}#${lost[0]!.seq}`);
      await state.close();
    } catch (err) {
      violations.push(`${name}: restore failed: ${(err as Error).message}`);
      await store.close().catch(() => undefined);
    }
  }
  return violations;
}
