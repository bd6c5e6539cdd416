/**
 * PendingWrites: the leader's admitted-but-not-yet-settled writes that a read lease would have refused (Remove,
 * RemoveAll, RemoveByPrefix without force; UpsertEnd, OffloadEnd: `refusableByLease` in admission.ts).
 *
 * Admission checks the key's lease and proposes; the write applies one commit later. A read that leased the key in
 * between would hold replicas the write then frees, inside its lease. So from admission until the write settles
 * (applied, failed, or this node stopped leading) the keys it covers are held here, and the leader neither leases
 * nor answers a read of them: the read waits (`whenClear`) and then answers the state after the write
 * (follower-reads.ts, replicaRead; a follower's read is refused by the leader's grant handler and retried).
 *
 * Soft state of one leadership, like LeaseTable. Holds are counted per key (two removes of one key may be in flight);
 * prefix holds (RemoveByPrefix; RemoveAll = the empty prefix) are listed with the keys they skip (leased at
 * admission, so never removed). Their number is bounded by the proposals in flight (maxPendingProposals).
 * Nothing here reads a clock.
 */
import { ErrorCode, MooringError } from '../errors.js';
import type { Command } from '../statemachine/commands.js';

/** The keys one pending write covers. */
export type Cover =
  | { kind: 'key'; key: string }
  | { kind: 'keys'; keys: readonly string[] }
  | { kind: 'prefix'; prefix: string; skip: ReadonlySet<string> };

/** One write's hold: released once (later calls, or calls after `clear`, do nothing). */
export interface Hold {
  release(): void;
}

interface PrefixHold {
  prefix: string;
  skip: ReadonlySet<string>;
}

interface Waiter {
  keys: readonly string[];
  resolve: () => void;
}

const noHold: Hold = { release: () => {} };

/** The keys an admitted write covers, or null when no read lease could have refused it. Call after `admit`. */
export function coverOf(command: Command): Cover | null {
  switch (command.type) {
    case 'Remove':
      return command.force === true ? null : { kind: 'key', key: command.key };
    case 'RemoveAll':
    case 'RemoveByPrefix':
      if (command.force === true) return null;
      return { kind: 'prefix', prefix: command.type === 'RemoveAll' ? '' : command.prefix, skip: new Set(command.skipKeys ?? []) };
    case 'UpsertEnd':
    case 'OffloadEnd':
      return { kind: 'key', key: command.key };
    default:
      return null;
  }
}

export class PendingWrites {
  private readonly keys = new Map<string, number>();
  private readonly prefixes = new Set<PrefixHold>();
  private readonly waiters = new Set<Waiter>();
  /** Bumped by `clear`: holds of an earlier leadership release nothing. */
  private generation = 0;

  /** Holds the keys `cover` covers until the returned hold is released. */
  hold(cover: Cover | null): Hold {
    if (cover === null) return noHold;
    if (cover.kind === 'keys') {
      const holds = cover.keys.map((key) => this.hold({ kind: 'key', key }));
      return { release: () => { for (const h of holds) h.release(); } };
    }
    const gen = this.generation;
    let done = false;
    if (cover.kind === 'key') {
      const key = cover.key;
      this.keys.set(key, (this.keys.get(key) ?? 0) + 1);
      return {
        release: () => {
          if (done) return;
          done = true;
          if (gen !== this.generation) return;
          const n = (this.keys.get(key) ?? 1) - 1;
          if (n <= 0) this.keys.delete(key);
          else this.keys.set(key, n);
          this.wake();
        },
      };
    }
    const p: PrefixHold = { prefix: cover.prefix, skip: cover.skip };
    this.prefixes.add(p);
    return {
      release: () => {
        if (done) return;
        done = true;
        if (gen !== this.generation) return;
        this.prefixes.delete(p);
        this.wake();
      },
    };
  }

  /** Whether a pending write covers `key` (no lease may be granted on it now). */
  covers(key: string): boolean {
    if (this.keys.has(key)) return true;
    for (const p of this.prefixes) if (key.startsWith(p.prefix) && !p.skip.has(key)) return true;
    return false;
  }

  /** Resolves once no pending write covers any of `keys` (at once if none does). */
  whenClear(keys: readonly string[]): Promise<void> {
    if (!keys.some((k) => this.covers(k))) return Promise.resolve();
    return new Promise<void>((resolve) => this.waiters.add({ keys, resolve }));
  }

  /** This node stopped leading: its writes are no longer its to settle, and it grants no leases. Wakes every read. */
  clear(): void {
    this.generation++;
    this.keys.clear();
    this.prefixes.clear();
    this.wake();
  }

  /** Writes holding keys now (keys counted once per hold; for tests and status). */
  get size(): number {
    let n = this.prefixes.size;
    for (const c of this.keys.values()) n += c;
    return n;
  }

  /** Reads waiting now. */
  get waiting(): number {
    return this.waiters.size;
  }

  private wake(): void {
    for (const w of this.waiters) {
      if (w.keys.some((k) => this.covers(k))) continue;
      this.waiters.delete(w);
      w.resolve();
    }
  }
}

/** What `holdUntilSettled` needs from the Raft node (RaftNode; only the leader proposes). */
export interface SettleView {
  readonly isLeader: boolean;
  readonly appliedIndex: number;
  status(): { lastIndex: number };
  on(event: 'applied' | 'roleChange', listener: () => void): unknown;
  off(event: 'applied' | 'roleChange', listener: () => void): unknown;
}

/**
 * Releases `hold` when `proposal` settles: applied, or failed for good. A proposal that timed out (TIMEOUT: its
 * outcome is unknown) is still in this leader's log and may apply later: the hold then stays until this node has
 * applied every entry it had at that moment, or stops leading (a new leader's first read waits for its own entry's
 * commit, which applies every earlier entry first).
 */
export function holdUntilSettled(hold: Hold, proposal: Promise<unknown>, raft: SettleView): void {
  proposal.then(() => hold.release(), (err: unknown) => {
    if (!(err instanceof MooringError && err.code === ErrorCode.TIMEOUT) || !raft.isLeader) {
      hold.release();
      return;
    }
    const last = raft.status().lastIndex;
    const check = (): void => {
      if (raft.isLeader && raft.appliedIndex < last) return;
      raft.off('applied', check);
      raft.off('roleChange', check);
      hold.release();
    };
    raft.on('applied', check);
    raft.on('roleChange', check);
    check();
  });
}
