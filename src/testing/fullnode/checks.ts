/**
 * What every full-node schedule must satisfy once its faults have healed:
 * - linearizability of the client history against the object model (unknown outcomes allowed);
 * - no acknowledged write lost: every write a client saw answered is remembered by every replica's exactly-once
 *   table (or retired from its window), so it was applied and survives in the replicated state;
 * - every backup taken during the run restores and holds the writes acknowledged before it began (backup-client.ts);
 * - equal state hashes on every replica once they have applied the same index (quiesce);
 * - log matching: replicas agree on the term of every committed index both still hold;
 * - election safety (FullSim.violations) and liveness (checked by the runner);
 * - read leases (sim-leases.ts, LeaseLedger.check): no Remove that applied was admitted by a leader while a lease a
 *   client had been given on its key (a getReplicaList that returned) was still running.
 */
import type { Operation } from '../linearizability.js';
import { checkLinearizability } from '../linearizability.js';
import type { FullSim } from './full-sim.js';
import type { MasterState } from '../../statemachine/master-state.js';
import { objectModel, type AckedWrite, type ObjectOp, type ObjectOutput } from './workload.js';

export interface CheckReport {
  linearizable: boolean;
  inconclusiveKeys: string[];
  explanation: string | null;
  lostAcked: number;
  stateHashesEqual: boolean;
  violations: string[];
  /** Lease-check violations (also in `violations`). */
  leaseViolations: number;
  /** Gets that returned ok with a lease; removes refused by a lease (OBJECT_HAS_LEASE); removes applied that deleted. */
  leasedReads: number;
  removesRefusedByLease: number;
  /** Client writes whose lease refusal the leader sealed for their seq (SealRefusal, `--client-writes`). */
  sealedRefusals: number;
  removesApplied: number;
  /** Writes sent through production's client (clientWrites runs). */
  clientWrites: number;
}

/** Waits (virtual time) until every running replica has applied what the leader committed. */
export async function quiesce(sim: FullSim, maxMs: number): Promise<boolean> {
  const done = (): boolean => {
    const up = sim.hosts.filter((h) => h.up);
    if (up.length === 0) return false;
    const commit = Math.max(...up.map((h) => h.raft!.commitIndex));
    return up.every((h) => h.raft!.appliedIndex >= commit && h.raft!.commitIndex === commit && h.raft!.status().recovering !== true) && (sim.workload?.idle ?? true);
  };
  await sim.run(maxMs, done);
  return done();
}

/**
 * The acknowledged writes a state's exactly-once table does not hold (neither remembered nor retired from its
 * window): lost writes. Used for every replica and for every restored backup (backup-client.ts).
 */
export function missingAcked(state: Pick<MasterState, 'clients' | 'sessionReply'>, acked: readonly AckedWrite[]): AckedWrite[] {
  return acked.filter((w) => w.seq > (state.clients.get(w.clientId)?.retiredSeq ?? 0) && state.sessionReply(w.clientId, w.seq) === undefined);
}

export function checkRun(sim: FullSim): CheckReport {
  const violations = [...sim.violations, ...sim.hosts.flatMap((h) => h.disk.violations)];
  const history = (sim.workload?.history ?? []) as Operation<ObjectOp, ObjectOutput>[];
  const lin = checkLinearizability(history, objectModel);
  const up = sim.hosts.filter((h) => h.up && h.state !== null);

  let lostAcked = 0;
  for (const w of sim.workload?.acked ?? []) {
    for (const h of up) {
      if (missingAcked(h.state!, [w]).length > 0) {
        lostAcked++;
        violations.push(`acknowledged write ${w.clientId}#${w.seq} missing on ${h.id}`);
        break;
      }
    }
  }

  // A node that cut a damaged tail must have been brought up to date once the faults healed (wal.ts, "Recovery").
  for (const h of up) if (h.raft!.status().recovering === true) violations.push(`${h.id} is still recovering its cut log after the faults healed`);

  const applied = new Set(up.map((h) => h.raft!.appliedIndex));
  const hashes = new Set(up.map((h) => h.state!.stateHash()));
  const stateHashesEqual = applied.size > 1 || hashes.size <= 1;
  if (!stateHashesEqual) violations.push(`replicas at the same applied index have different state hashes: ${up.map((h) => `${h.id}@${h.raft!.appliedIndex}`).join(' ')}`);

  for (let i = 0; i < up.length; i++) {
    for (let j = i + 1; j < up.length; j++) {
      const a = up[i]!;
      const b = up[j]!;
      const sa = a.logStorage!;
      const sb = b.logStorage!;
      const lo = Math.max(sa.firstIndex(), sb.firstIndex());
      const hi = Math.min(a.raft!.commitIndex, b.raft!.commitIndex, sa.lastIndex(), sb.lastIndex());
      for (let k = lo; k <= hi; k++) {
        if (sa.term(k) !== sb.term(k)) {
          violations.push(`log mismatch at committed index ${k}: ${a.id} term ${sa.term(k)}, ${b.id} term ${sb.term(k)}`);
          break;
        }
      }
    }
  }
  const leaseViolations = sim.leases?.check() ?? [];
  violations.push(...leaseViolations);
  return {
    linearizable: lin.ok,
    inconclusiveKeys: lin.inconclusiveKeys,
    explanation: lin.counterexample?.explanation ?? null,
    lostAcked,
    stateHashesEqual,
    violations,
    leaseViolations: leaseViolations.length,
    leasedReads: sim.leases?.reads.length ?? 0,
    removesRefusedByLease: sim.workload?.refusedByLease ?? 0,
    sealedRefusals: sim.workload?.sealedRefusals ?? 0,
    removesApplied: sim.leases?.removesApplied ?? 0,
    clientWrites: sim.workload?.clientWrites ?? 0,
  };
}
