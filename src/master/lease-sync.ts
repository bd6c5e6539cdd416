/**
 * LeaseSync: read leases survive a leader change without treating every object as leased for a whole TTL.
 *
 * Leases stay leader soft state (never in the Raft log), but a majority of members learns each one before the
 * reader gets its descriptors, and a new leader asks a majority what they know before it removes or evicts:
 *
 * - Leader: after a read grants (or extends) leases, `announce(keys)` sends `{k:'ls', t: term, seq, keys: [[key,
 *   remainingMs]]}` to every peer over the peer transport (the authenticated Raft connections; RaftNode never sees
 *   these frames) and resolves once a majority of voters (itself included) acknowledged that very frame (acks are
 *   not cumulative: a frame can be lost, a dropped connection, while a later one arrives; seed 70094 of the
 *   simulator). Announcements of one event-loop turn share a frame; a key already announced up to its expiry is not
 *   sent again, but a read of it waits for that frame's majority.
 * - Member: keeps what it was told in `known` (local expiry = arrival + remainingMs, so transit only lengthens it)
 *   and acknowledges, unless the frame's term is older than one it has seen (a deposed leader gets no majority, so
 *   its reads fail instead of handing out leases nobody will honour).
 * - New leader: keeps the blanket lease (every object leased) while it asks every peer `{k:'lq', t}`; answers
 *   `{k:'lr', t, keys, last, amnesic?}` (in chunks) are adopted into its lease table; once a majority (itself
 *   included) answered, the blanket ends. Any majority that acknowledged a lease and any majority that answered share a
 *   member, and that member acknowledged before it answered (after answering term t it refuses older terms), so
 *   the new leader learns every lease a reader may hold. The blanket still ends after one TTL at the latest.
 *
 * Restarts: a restarted member may have acknowledged a lease it no longer knows (the two majorities would meet only
 * in a member that forgot: docs/raft.md). So a member records every lease it acknowledges (and a leader its own
 * grants, and a follower the leases of the reads it serves), and every term it answers, in its lease file
 * (`store`, lease-file.ts: one write(2) to the page cache, no fsync) before the acknowledgement goes out. A process
 * restarted on the same boot (a SIGKILL keeps the page cache) restores them and is not amnesic. Otherwise — no file,
 * a damaged one, another boot id (a power loss may have lost writes), no `store` — a member that started with Raft
 * state (`fresh` false) answers `lr` with `amnesic: true` (keys adopted, member not counted) until one TTL plus the
 * margin after it started, and records that end in its new file, so a second restart meanwhile stays amnesic too; a
 * new leader in that state does not count itself. Meanwhile the blanket holds (≤ one TTL). A member whose file
 * cannot be written withholds its acknowledgements (lease-file.ts says when).
 *
 * Announcing ahead: a lease is announced as lasting `announceAheadMs(ttl)` (half a TTL, at most maxAnnounceAheadMs)
 * longer than the leader granted it. Members then protect a key at most that much longer than the reader was
 * promised, never less, and a key read again and again is announced at most once per that interval instead of on
 * every read (every read extends its lease, so an exact announcement is out of date at the next read: hot keys cost a
 * majority round trip and a frame to each member per read). After a failover a key not read for a TTL is thus
 * removable within maxAnnounceAheadMs.
 *
 * Clocks: each process's lease clock (epoch milliseconds that never step), exchanged only as durations. Time comes
 * only from the caller's `nowMs` and the injected `clock` (its now() in the same time base as the lease table:
 * production passes `leaseClock`, src/raft/effects/system-clock.ts; the full-node simulator a node's virtual NodeClock), so the
 * simulator runs this code on its own clock and replays it bit for bit.
 */
import { ErrorCode, MooringError } from '../errors.js';
import type { Role } from '../raft/core/types.js';
import type { Clock, Timer } from '../raft/node/clock.js';
import type { RaftNode } from '../raft/node/raft-node.js';
import { LeaseTable, type LeaseEntry } from '../statemachine/leases.js';
import type { LeaseFile, RecordedSlot } from './lease-file.js';
import type { LoggerLike } from '../transport/logger.js';

/** Keys per lease frame (a frame stays far below maxFrameBytes: keys are ≤ a few hundred bytes). */
export const maxLeaseKeysPerFrame = 2_048;

/**
 * Lease frames (seqs) whose acknowledgements a leader keeps per member; an older frame counts as unacknowledged (its
 * keys are announced again when read again; a read still waiting on it times out and is retried).
 */
export const maxTrackedLeaseFrames = 65_536;

/** The most a lease is announced beyond its grant (see "Announcing ahead" above). */
export const maxAnnounceAheadMs = 2_500;

/** How much longer than granted a lease is announced. */
export function announceAheadMs(leaseTtlMs: number): number {
  return Math.min(Math.ceil(leaseTtlMs / 2), maxAnnounceAheadMs);
}

/**
 * How long a read waits for its announcement to reach a majority, and a write reaching a new leader for the lease
 * collection (`learned`): max(1 s, 4 election timeouts).
 */
export function leaseWaitMs(electionTimeoutMs: number): number {
  return Math.max(1_000, 4 * electionTimeoutMs);
}

/** The clock LeaseSync needs: now() in the lease table's time base, a cancellable timer, and "after pending I/O". */
export type LeaseClock = Pick<Clock, 'now' | 'setTimeout' | 'setImmediate'>;

export interface LeaseSyncOptions {
  self: string;
  leases: LeaseTable;
  send(to: string, frame: unknown): boolean;
  /** Current voters (self included) and every peer to inform (voters and learners). */
  voters(): readonly string[];
  peers(): readonly string[];
  term(): number;
  /** How long an announcement may wait for a majority before the read fails. */
  ackTimeoutMs(): number;
  /**
   * True when this process started without Raft state (a new member: it never acknowledged a lease). Otherwise it may
   * have acknowledged leases before a restart that it no longer knows, so for the longest time a member keeps a
   * lease (TTL + the margin) after it started it does not count towards a new leader's majority (see "Restarts").
   * A lease file this boot wrote (`store`) wins over both: it says what this member acknowledged.
   */
  fresh?: boolean;
  /**
   * Where this member records what it acknowledges (and the terms it saw) before acknowledging, so that a restart on
   * the same boot is not amnesic (lease-file.ts). Absent: knowledge lives in memory only.
   */
  store?: LeaseFile;
  /** Timers and the flush's time; now() must be the time base of `leases` (the callers' nowMs). */
  clock: LeaseClock;
  logger: LoggerLike;
}

/**
 * The members and term LeaseSync follows, read from this node's RaftNode (production's MasterNode and the
 * simulator's SimMasterHost).
 */
export function raftLeaseView(raft: () => Pick<RaftNode, 'members' | 'coreTerm'>): Pick<LeaseSyncOptions, 'voters' | 'peers' | 'term'> {
  return {
    voters: () => raft().members().voters,
    peers: () => {
      const cs = raft().members();
      return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners])];
    },
    // The core's term, not currentTerm: the role change is announced before the node records the new term.
    term: () => raft().coreTerm,
  };
}

interface Waiter {
  /** The frames (seqs) a majority must have acknowledged, each one: frames can be lost, so acks are not cumulative. */
  seqs: number[];
  resolve(): void;
  reject(e: MooringError): void;
  timer: Timer;
}

export class LeaseSync {
  /** What this member was told by leaders (and, on a leader, what it learned when elected). */
  readonly known: LeaseTable;
  private termSeen = 0;
  // leader side
  private leaderTerm = 0;
  private seq = 0;
  /**
   * Keys to announce in the next frame: key, expiry, and its lease entry, whose note (LeaseEntry.noteUntil/noteSeq:
   * what this leader announced of the key, and in which frame; seq 0: in this batch, not yet sent) is set when sent.
   */
  private batch: Array<[string, number, LeaseEntry]> = [];
  private flushScheduled = false;
  /** Per member: the seqs (frames) of this term it acknowledged, above `ackFloor`. */
  private readonly acked = new Map<string, Set<number>>();
  /** Acknowledgements of seqs at or below this are forgotten (bounded memory): such frames count as unacknowledged. */
  private ackFloor = 0;
  /** Waiters for the batch not yet sent: they get its last seq when it goes. */
  private unsent: Waiter[] = [];
  private waiters: Waiter[] = [];
  // new-leader collection
  private collecting: { term: number; answered: Set<string>; sinceMs: number } | null = null;
  /** Callers waiting for the collection to end. */
  private learnWaiters: Array<() => void> = [];

  /** Until when (this clock) a restarted member cannot vouch that it knows every lease it acknowledged. */
  private readonly amnesicUntil: number;
  /** The lease file could not be written (lease-file.ts): acknowledgements are withheld until it can. */
  private storeBroken = false;

  constructor(private readonly o: LeaseSyncOptions) {
    this.known = new LeaseTable(o.leases.leaseTtlMs);
    const now = o.clock.now();
    // Trusted even when `fresh`: a new member may have acknowledged leases before it persisted any Raft state.
    const restored = o.store?.restored(now) ?? null;
    if (restored !== null) {
      // The previous process of this boot recorded every lease it acknowledged before acknowledging it.
      this.amnesicUntil = restored.amnesicUntilMs;
      this.termSeen = restored.termSeen;
      for (const [k, until] of restored.leases) this.known.adopt(k, until);
    } else if (o.fresh === true) this.amnesicUntil = 0;
    else this.amnesicUntil = now + o.leases.leaseTtlMs + announceAheadMs(o.leases.leaseTtlMs);
    if (o.store !== undefined) {
      if (!o.store.begin(now, { amnesicUntilMs: this.amnesicUntil, termSeen: this.termSeen, leases: this.known.live(now) })) this.storeBroken = true;
      if (restored !== null) {
        o.logger.info({ leases: restored.leases.length, amnesic: this.amnesicUntil > now }, 'restored the read leases this member acknowledged before its restart');
      }
    }
  }

  /**
   * Records acknowledged leases and the term seen before an acknowledgement goes out; false: it must not go out.
   */
  private persist(nowMs: number, leases: Iterable<readonly [string, number, number?, RecordedSlot?]>): boolean {
    const s = this.o.store;
    if (s === undefined) return true;
    const ok = s.record(nowMs, leases, this.termSeen);
    this.storeBroken = !ok;
    return ok;
  }

  /** True while this member may have forgotten (by a restart) leases it acknowledged that may still run. */
  private amnesic(nowMs: number): boolean {
    return nowMs < this.amnesicUntil;
  }

  /**
   * Follows this node's role changes (master-node.ts and the full-node simulator's SimMasterHost both call it): a
   * new leader treats every object as leased (`resetForNewLeader`) and learns the old leader's leases from a
   * majority (`becameLeader`); any other role stops leading (`steppedDown`).
   */
  roleChanged(role: Role, nowMs: number): void {
    if (role !== 'leader') {
      // A leader that stops leading keeps its grants as a member's knowledge: elected again, it counts itself in the
      // majority that answers its collection (and resetForNewLeader clears its table), so it must still know them.
      // (Found by the full-node simulator, seed 176: re-elected with a member that never heard of the lease.)
      if (this.leaderTerm !== 0) for (const [k, until] of this.o.leases.live(nowMs)) this.known.adopt(k, until);
      this.steppedDown();
      return;
    }
    this.o.leases.resetForNewLeader(nowMs);
    this.becameLeader(nowMs);
  }

  /** This node became leader (after leases.resetForNewLeader): learn the old leader's leases from a majority. */
  becameLeader(nowMs: number): void {
    const term = this.o.term();
    this.leaderTerm = term;
    this.termSeen = Math.max(this.termSeen, term);
    this.seq = 0;
    this.acked.clear();
    this.ackFloor = 0;
    this.o.leases.clearNotes();
    for (const [k, until] of this.known.live(nowMs)) this.o.leases.adopt(k, until);
    const at = this.o.clock.now();
    this.collecting = { term, answered: new Set(this.amnesic(at) ? [] : [this.o.self]), sinceMs: at };
    for (const p of this.o.peers()) if (p !== this.o.self) this.o.send(p, { k: 'lq', t: term });
    this.checkCollected();
  }

  steppedDown(): void {
    this.leaderTerm = 0;
    this.collecting = null;
    for (const w of this.learnWaiters.splice(0)) w();
    this.batch = [];
    // Notes of this leadership's frames mean nothing in the next (its seqs start again; its batch is dropped).
    this.o.leases.clearNotes();
    for (const w of [...this.waiters.splice(0), ...this.unsent.splice(0)]) {
      w.timer.cancel();
      w.reject(new MooringError(ErrorCode.NOT_LEADER, 'stopped leading before the read lease was known to a majority'));
    }
  }

  /** True while the new leader still waits for a majority's leases (every object counts as leased meanwhile). */
  get learning(): boolean {
    return this.collecting !== null;
  }

  /**
   * Resolves once the new leader learned the leases (typically one round trip after its election) or `maxWaitMs`
   * after the collection began (the blanket then stays until it ends): a remove right after a failover waits for
   * that instead of being refused by the blanket.
   */
  learned(maxWaitMs: number): Promise<void> {
    if (this.collecting === null) return Promise.resolve();
    // Counted from the start of the collection, not per caller: when it cannot finish (amnesic members after
    // restarts, a paused member), later writes go straight to admission under the blanket (a definite
    // OBJECT_HAS_LEASE) instead of each waiting out the whole time and timing out at the client.
    const leftMs = this.collecting.sinceMs + maxWaitMs - this.o.clock.now();
    if (leftMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        timer.cancel();
        resolve();
      };
      const timer = this.o.clock.setTimeout(() => {
        this.learnWaiters = this.learnWaiters.filter((w) => w !== done);
        resolve();
      }, leftMs);
      this.learnWaiters.push(done);
    });
  }

  /**
   * Leader: resolves once the current leases of `keys` are known to a majority of voters. Keys whose lease was
   * already announced up to its current expiry cost nothing. `justGranted`: the caller granted every key at `nowMs`
   * (LeaseTable.grant: the table holds at least one TTL from now, and that is what the reader was promised), so the
   * table is not read again per key.
   */
  announce(keys: Iterable<string>, nowMs: number, justGranted = false): Promise<void> {
    if (this.leaderTerm === 0) return Promise.reject(new MooringError(ErrorCode.NOT_LEADER, 'not the leader'));
    const need = new Set<number>();
    let lastNeed = 0;
    let inBatch = false;
    const ttl = this.o.leases.leaseTtlMs;
    for (const k of keys) {
      const until = justGranted ? nowMs + ttl : this.o.leases.expiry(k);
      if (until <= nowMs) continue;
      // What the reader was promised: a grant ends at most one TTL from now. The table may hold more (a lease adopted
      // from a member's answer to this leader's collection); that is known to the majority that acknowledged it, and
      // members cap what they are told at one announced-ahead TTL from arrival anyway (see flush).
      const promised = Math.min(until, nowMs + ttl);
      // The note is kept on the key's lease entry: the grant just found it, so this lookup is warm.
      const a = this.o.leases.entry(k);
      // Announced long enough already, in a frame whose acknowledgements are still tracked: that frame must reach a
      // majority (not any later one: a member that acknowledged a later frame may have lost this one).
      if (a !== undefined && a.noteUntil > 0 && a.noteUntil >= promised && (a.noteSeq === 0 || a.noteSeq > this.ackFloor)) {
        if (a.noteSeq === 0) inBatch = true;
        else if (a.noteSeq !== lastNeed) need.add((lastNeed = a.noteSeq)); // a read's keys mostly share a frame
        continue;
      }
      const ahead = until + announceAheadMs(ttl);
      // Noted on the lease entry (no allocation per announcement of a hot key); its frame's seq is set when it is
      // sent. A key with no entry (none granted: not a read's path) is announced without a note.
      const rec = a ?? { until, noteUntil: 0, noteSeq: 0, recordedUntil: 0 };
      rec.noteUntil = ahead;
      rec.noteSeq = 0;
      this.batch.push([k, ahead, rec]);
      inBatch = true;
    }
    if (inBatch) {
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        this.o.clock.setImmediate(() => this.flush());
      }
      return this.waitFor([...need], true);
    }
    if (need.size === 0 || this.majorityAcked([...need])) return Promise.resolve();
    return this.waitFor([...need], false);
  }

  /**
   * Follower: remembers the leases of a read it serves (the leader granted them in its ReadIndex answer), so a new
   * leader collecting leases from a majority learns them (with the leader's own record, a majority of three).
   * Refused once a newer term was seen than `readTerm`, the one the read was confirmed in (this node's term when the
   * read began): that term's leader recorded the lease, but a newer leader's collection may be over without it (the
   * follower may wait long to apply the read index; simulator seed 27669: a leader change meanwhile, the collection
   * met a majority that had not heard of the lease, and a remove applied inside it).
   * `until`: the latest a reader's lease of these keys may end (default one TTL from now; a grant that also covers
   * later reads, follower-lease-cover.ts, passes the end of the last read it covers). Called with no keys it only
   * checks the term (a read served from a cover).
   */
  recordServed(keys: readonly string[], nowMs: number, readTerm: number, until = nowMs + this.o.leases.leaseTtlMs): void {
    if (Math.max(this.termSeen, this.o.term()) > readTerm) throw new MooringError(ErrorCode.NOT_LEADER, 'a newer leader was seen while the read was confirmed; retry');
    if (keys.length === 0) return;
    // Counted by a new leader's collection like an acknowledgement: recorded before the read is answered, ahead by
    // the announce margin (as a leader announces), so a key read again and again costs a write once per margin (and
    // none when the leader's announcement of it, which usually arrives first, was recorded long enough).
    const ahead = until + announceAheadMs(this.o.leases.leaseTtlMs);
    if (!this.persist(nowMs, keys.map((k) => [k, until, ahead, this.known.adopt(k, until)] as const))) throw new MooringError(ErrorCode.STORAGE_FAILED, 'could not record the read lease; retry');
  }

  /**
   * Leader: records the leases it just granted to a follower's read, before its ReadIndex answer leaves. With the
   * serving follower's own record (`recordServed`, before it answers) that is a majority of three, so these are not
   * announced: sending them to every member cost each follower a frame, a lease-file record and an acknowledgement
   * per key read through another follower, for knowledge no new leader's collection needs (any majority of three
   * meets the leader or the serving follower; linearizableRead keeps follower leases to clusters of ≤ 3 voters).
   * False: not leading, or the lease file could not be written; the read must not be answered with these leases.
   */
  recordGranted(keys: readonly string[], nowMs: number): boolean {
    if (this.leaderTerm === 0) return false;
    if (keys.length === 0) return true;
    const ttl = this.o.leases.leaseTtlMs;
    const ahead = announceAheadMs(ttl);
    // As recordServed: ahead by the announce margin, so a key read again and again costs a write once per margin.
    return this.persist(nowMs, keys.map((k) => {
      const e = this.o.leases.entry(k);
      const until = e?.until ?? 0;
      return [k, until, until + ahead, e] as const;
    }));
  }

  /** Consumes lease frames; returns false for anything else (Raft frames). */
  onFrame(from: string, frame: unknown, nowMs: number): boolean {
    if (typeof frame !== 'object' || frame === null) return false;
    const f = frame as Record<string, unknown>;
    const kind = f.k;
    if (kind !== 'ls' && kind !== 'la' && kind !== 'lq' && kind !== 'lr') return false;
    const t = f.t;
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) return true; // malformed: dropped
    try {
      switch (kind) {
        case 'ls': {
          this.termSeen = Math.max(this.termSeen, this.o.term());
          if (t < this.termSeen) return true; // a deposed leader: no acknowledgement
          this.termSeen = t;
          const learned = this.learn(f.keys, nowMs);
          // Recorded before acknowledged: a restart on this boot still vouches for it (lease-file.ts).
          if (!this.persist(nowMs, learned)) return true;
          if (typeof f.seq === 'number') this.o.send(from, { k: 'la', t, seq: f.seq });
          return true;
        }
        case 'la':
          if (t === this.leaderTerm && typeof f.seq === 'number' && Number.isSafeInteger(f.seq) && f.seq > this.ackFloor && f.seq <= this.seq) {
            let got = this.acked.get(from);
            if (got === undefined) this.acked.set(from, (got = new Set()));
            got.add(f.seq);
            this.forgetOldAcks();
            this.settle();
          }
          return true;
        case 'lq': {
          if (t > this.termSeen) {
            this.termSeen = t;
            // After answering term t this member refuses older terms, also after a restart: recorded first.
            if (!this.persist(nowMs, [])) return true;
          } else if (this.storeBroken && !this.persist(nowMs, [])) return true;
          const all = [...this.known.live(nowMs), ...this.o.leases.live(nowMs)];
          for (let i = 0; i === 0 || i < all.length; i += maxLeaseKeysPerFrame) {
            const chunk = all.slice(i, i + maxLeaseKeysPerFrame).map(([k, until]) => [k, until - nowMs]);
            const last = i + maxLeaseKeysPerFrame >= all.length;
            this.o.send(from, { k: 'lr', t, keys: chunk, last, ...(last && this.amnesic(nowMs) ? { amnesic: true } : {}) });
          }
          return true;
        }
        case 'lr': {
          const c = this.collecting;
          if (c === null || t !== c.term || t !== this.leaderTerm) return true;
          for (const [k, until] of this.parseKeys(f.keys, nowMs)) this.o.leases.adopt(k, until);
          // A restarted member's answer is adopted but does not count: it may have forgotten a lease (see "Restarts").
          if (f.last === true && f.amnesic !== true) {
            c.answered.add(from);
            this.checkCollected();
          }
          return true;
        }
      }
    } catch (err) {
      this.o.logger.warn({ from, err: err instanceof Error ? err.message : String(err) }, 'dropped a bad lease frame from a peer');
    }
    return true;
  }

  /**
   * Forget expired knowledge (call now and then): up to `budget` expired leases. True when work is left: call again on
   * a later turn. (What a leader announced goes with its lease entries, pruned with the lease table.)
   */
  prune(nowMs: number, budget = Infinity): boolean {
    return this.known.prune(nowMs, budget) >= budget;
  }

  // ------------------------------------------------------------------ internals

  /** Adopts a leader's announced leases; returns them with their entries (for the lease file's slot). */
  private learn(keys: unknown, nowMs: number): Array<readonly [string, number, undefined, LeaseEntry]> {
    return this.parseKeys(keys, nowMs).map(([k, until]) => [k, until, undefined, this.known.adopt(k, until)] as const);
  }

  private parseKeys(keys: unknown, nowMs: number): Array<[string, number]> {
    if (!Array.isArray(keys) || keys.length > maxLeaseKeysPerFrame) throw new Error('lease frame without a valid key list');
    const longest = this.o.leases.leaseTtlMs + announceAheadMs(this.o.leases.leaseTtlMs);
    const out: Array<[string, number]> = [];
    for (const e of keys) {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1])) throw new Error('bad lease entry');
      // A lease never lasts longer than one announced-ahead TTL from now, whatever a peer says.
      out.push([e[0], nowMs + Math.min(Math.max(0, e[1]), longest)]);
    }
    return out;
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.batch.length === 0 || this.leaderTerm === 0) return;
    const now = this.o.clock.now();
    // A member keeps a lease at most one announced-ahead TTL from the frame's arrival (parseKeys), so that is all
    // that is announced and recorded as announced: recording more made later reads skip an announcement that members
    // had cut short (simulator seed 77511: an adopted expiry plus the margin came to 1.8 TTL, members kept 1.5, and a
    // read granted later was answered while no member knew its lease).
    const longest = this.o.leases.leaseTtlMs + announceAheadMs(this.o.leases.leaseTtlMs);
    const batch = this.batch.splice(0);
    const entries = batch.map(([k, until, rec]) => [k, Math.min(until, now + longest), undefined, rec] as const);
    // The leader counts itself in every majority: its grants are recorded like a member's acknowledgement.
    if (!this.persist(now, entries)) {
      for (const [, , rec] of batch) if (rec.noteSeq === 0) rec.noteUntil = 0;
      for (const w of this.unsent.splice(0)) {
        w.timer.cancel();
        w.reject(new MooringError(ErrorCode.STORAGE_FAILED, 'could not record the read lease; retry'));
      }
      return;
    }
    const firstSeq = this.seq + 1;
    for (let i = 0; i < entries.length; i += maxLeaseKeysPerFrame) {
      const seq = ++this.seq;
      const chunk = entries.slice(i, i + maxLeaseKeysPerFrame);
      for (let j = 0; j < chunk.length; j++) {
        // A record announced again before this flush is in the batch twice: the later entry (same or longer) wins.
        const a = batch[i + j]![2];
        if (a.noteSeq === 0 || a.noteSeq === seq) {
          a.noteSeq = seq;
          a.noteUntil = chunk[j]![1];
        }
      }
      const keys = chunk.map(([k, until]) => [k, until - now]);
      for (const p of this.o.peers()) if (p !== this.o.self) this.o.send(p, { k: 'ls', t: this.leaderTerm, seq, keys });
    }
    // The waiters of this batch need every frame of it (one per maxLeaseKeysPerFrame keys).
    const sent = Array.from({ length: this.seq - firstSeq + 1 }, (_, i) => firstSeq + i);
    for (const w of this.unsent.splice(0)) {
      w.seqs.push(...sent);
      this.waiters.push(w);
    }
    this.settle();
  }

  /** Waits until a majority acknowledged every frame in `seqs` (and, with `unsent`, every frame of the next batch). */
  private waitFor(seqs: number[], unsent: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        seqs,
        resolve,
        reject,
        timer: this.o.clock.setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          this.unsent = this.unsent.filter((x) => x !== w);
          reject(new MooringError(ErrorCode.TIMEOUT, 'the read lease was not acknowledged by a majority of masters in time'));
        }, this.o.ackTimeoutMs()),
      };
      if (unsent) this.unsent.push(w);
      else {
        this.waiters.push(w);
        this.settle();
      }
    });
  }

  /**
   * Did a majority of voters (self included: it has every frame it sent) acknowledge every frame in `seqs`? No
   * closures or copies: it runs for every waiter at every acknowledgement (settle).
   */
  private majorityAcked(seqs: readonly number[], voters: readonly string[] = this.o.voters()): boolean {
    for (let i = 0; i < seqs.length; i++) if (seqs[i]! <= this.ackFloor) return false; // forgotten: the waiter times out, the read is retried
    let n = 0;
    for (const v of voters) {
      if (v === this.o.self) {
        n++;
        continue;
      }
      const got = this.acked.get(v);
      if (got === undefined) continue;
      let all = true;
      for (let i = 0; i < seqs.length && all; i++) all = got.has(seqs[i]!);
      if (all) n++;
    }
    return n * 2 > voters.length;
  }

  /** Keeps at most maxTrackedLeaseFrames seqs of acknowledgements per member (older frames count as unacknowledged). */
  private forgetOldAcks(): void {
    const floor = this.seq - maxTrackedLeaseFrames;
    if (floor - this.ackFloor < maxTrackedLeaseFrames / 4) return; // pruned in steps: a step walks every set
    this.ackFloor = floor;
    for (const got of this.acked.values()) for (const q of got) if (q <= floor) got.delete(q);
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const voters = this.o.voters();
    let kept = 0;
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i]!;
      if (this.majorityAcked(w.seqs, voters)) {
        w.timer.cancel();
        w.resolve();
      } else this.waiters[kept++] = w;
    }
    this.waiters.length = kept;
  }

  private checkCollected(): void {
    const c = this.collecting;
    if (c === null) return;
    const voters = this.o.voters();
    const answered = voters.filter((v) => c.answered.has(v)).length;
    if (answered * 2 > voters.length) {
      this.collecting = null;
      this.o.leases.endBlanket();
      for (const w of this.learnWaiters.splice(0)) w();
      this.o.logger.info({ term: c.term, answered }, 'learned the read leases of the previous leader from a majority');
    }
  }
}
