/**
 * Raft safety invariants, checked continuously while a simulation runs (Raft paper, figure 3):
 * - election safety: at most one leader per term over the whole run;
 * - log matching: two logs holding an entry with the same index and term hold the same entry there and agree
 *   on every earlier entry;
 * - leader completeness: a leader's log holds every entry committed in earlier terms;
 * - state-machine safety: no two nodes apply different entries at one index;
 * - monotonic commit and applied per node; after a restart commit never falls below the durable commit, and
 *   applied indices advance one by one (or jump forward by a snapshot).
 * Violations are collected as readable strings (the run goes on, so the first one is not the only one shown).
 */
import type { Entry, NodeId } from '../raft/core/types.js';

/** Stops collecting after this many violations (the first few are what matter). */
export const maxViolationsKept = 50;

function entryKey(e: Entry): string {
  let s = '';
  // Latin-1 of the bytes: cheap and exact for comparing.
  for (let i = 0; i < e.data.length; i++) s += String.fromCharCode(e.data[i]!);
  return `${e.term}/${e.type}/${s}`;
}

/** What a checker needs to see of one node's durable log. */
export interface LogView {
  node: NodeId;
  /** Index and term of the snapshot the log starts after (0, 0 when none). */
  snapshotIndex: number;
  snapshotTerm: number;
  /** Entries after the snapshot, contiguous. */
  entries: readonly Entry[];
}

export class InvariantChecker {
  readonly violations: string[] = [];
  private readonly leaderOfTerm = new Map<number, NodeId>();
  /** index → key of the entry some node applied there. */
  private readonly appliedAt = new Map<number, string>();
  /** index → term of committed entries (learned from application). */
  readonly committedTerm = new Map<number, number>();
  /** (index, term) → entry key of every entry any node persisted. */
  private readonly persisted = new Map<string, string>();
  private readonly durableCommit = new Map<NodeId, number>();
  private readonly lastApplied = new Map<NodeId, number>();
  private readonly leaderChecked = new Set<string>();
  private highestLeaderTerm = 0;
  now = 0;

  private fail(msg: string): void {
    if (this.violations.length < maxViolationsKept) this.violations.push(`tick ${this.now}: ${msg}`);
  }

  /** A node reported itself leader of `term`. */
  onLeader(node: NodeId, term: number): void {
    const prev = this.leaderOfTerm.get(term);
    if (term > this.highestLeaderTerm) this.highestLeaderTerm = term;
    if (prev === undefined) this.leaderOfTerm.set(term, node);
    else if (prev !== node) this.fail(`election safety: ${prev} and ${node} are both leaders of term ${term}`);
  }

  /** The highest term in which any node has been leader so far (0 if none). */
  maxLeaderTerm(): number {
    return this.highestLeaderTerm;
  }

  /** Leader completeness, checked once per (leader, term) when its first Ready as leader is persisted. */
  checkLeaderCompleteness(node: NodeId, term: number, log: LogView): void {
    const k = `${node}@${term}`;
    if (this.leaderChecked.has(k)) return;
    this.leaderChecked.add(k);
    const last = log.snapshotIndex + log.entries.length;
    for (const [index, t] of this.committedTerm) {
      if (t >= term || index <= log.snapshotIndex) continue;
      const e = index <= last ? log.entries[index - log.snapshotIndex - 1] : undefined;
      if (!e || e.term !== t) {
        this.fail(
          `leader completeness: ${node}, leader of term ${term}, lacks committed entry ${index} (term ${t}); ` +
            `it has ${e ? `term ${e.term}` : 'nothing'} there`,
        );
      }
    }
  }

  /** Entries a node has just made durable. */
  onPersisted(node: NodeId, entries: readonly Entry[]): void {
    for (const e of entries) {
      const id = `${e.index}:${e.term}`;
      const key = entryKey(e);
      const prev = this.persisted.get(id);
      if (prev === undefined) this.persisted.set(id, key);
      else if (prev !== key) this.fail(`log matching: ${node} persisted a different entry at index ${e.index} term ${e.term}`);
    }
  }

  /** `node` durably declared entry `index` (of `term`) committed. Two terms committed at one index is a violation. */
  onCommitted(node: NodeId, index: number, term: number): void {
    const t = this.committedTerm.get(index);
    if (t === undefined) this.committedTerm.set(index, term);
    else if (t !== term) this.fail(`state-machine safety: ${node} committed term ${term} at index ${index}, already committed with term ${t}`);
  }

  /**
   * `node` durably wrote commit index `commit`. Durable commits never go back. (An entry may be applied before the
   * hard state that covers its commit is durable — pipelined storage writes — so this is checked against the durable
   * commits.)
   */
  onCommit(node: NodeId, commit: number): void {
    const prev = this.durableCommit.get(node) ?? 0;
    if (commit < prev) this.fail(`monotonic commit: ${node} commit went from ${prev} to ${commit}`);
    else this.durableCommit.set(node, commit);
  }

  /** A node restarted; its core reports `commit`, its durable hard state said `durableCommit`. */
  onRestart(node: NodeId, commit: number, durableCommit: number, applied: number): void {
    if (commit < durableCommit) {
      this.fail(`monotonic commit: ${node} restarted with commit ${commit} below its durable commit ${durableCommit}`);
    }
    this.durableCommit.set(node, durableCommit);
    this.lastApplied.set(node, applied);
  }

  onApply(node: NodeId, e: Entry): void {
    const prev = this.lastApplied.get(node) ?? 0;
    if (e.index !== prev + 1) this.fail(`monotonic applied: ${node} applied index ${e.index} right after ${prev}`);
    this.lastApplied.set(node, e.index);
    const key = entryKey(e);
    const seen = this.appliedAt.get(e.index);
    if (seen === undefined) {
      this.appliedAt.set(e.index, key);
      this.committedTerm.set(e.index, e.term);
    } else if (seen !== key) {
      this.fail(`state-machine safety: ${node} applied a different entry at index ${e.index} (term ${e.term})`);
    }
  }

  onSnapshotApplied(node: NodeId, index: number): void {
    const prev = this.lastApplied.get(node) ?? 0;
    if (index < prev) this.fail(`monotonic applied: ${node} installed a snapshot at ${index} below applied ${prev}`);
    this.lastApplied.set(node, index);
  }

  /** Log matching across all pairs of durable logs. */
  checkLogs(logs: readonly LogView[]): void {
    for (let i = 0; i < logs.length; i++) {
      for (let j = i + 1; j < logs.length; j++) this.checkPair(logs[i]!, logs[j]!);
    }
  }

  private checkPair(a: LogView, b: LogView): void {
    const lo = Math.max(a.snapshotIndex, b.snapshotIndex) + 1;
    const hi = Math.min(a.snapshotIndex + a.entries.length, b.snapshotIndex + b.entries.length);
    const at = (v: LogView, idx: number): Entry => v.entries[idx - v.snapshotIndex - 1]!;
    // The highest common index with equal terms: everything up to it must be identical.
    let top = -1;
    for (let idx = hi; idx >= lo; idx--) {
      if (at(a, idx).term === at(b, idx).term) {
        top = idx;
        break;
      }
    }
    for (let idx = lo; idx <= top; idx++) {
      const ea = at(a, idx);
      const eb = at(b, idx);
      if (entryKey(ea) !== entryKey(eb)) {
        this.fail(
          `log matching: ${a.node} and ${b.node} agree at index ${top} (term ${at(a, top).term}) but differ at ${idx} ` +
            `(terms ${ea.term} vs ${eb.term})`,
        );
        return;
      }
    }
  }
}
