/**
 * The Ready loop, with pipelined storage writes (etcd-raft's AsyncStorageWrites model). Per Ready: send `messages`
 * at once → hand snapshot + entries + hard state to storage as ONE synced batch, WITHOUT waiting for it → apply the
 * committed entries (the core hands out only entries already durable here) → serve reads → `core.onApplied()` → take
 * the next Ready. While a save is being synced the loop keeps stepping messages, batching proposals into the next
 * Ready and sending the leader's appends; the saves themselves stay strictly ordered (the log storage serializes
 * them). When a save resolves, in Ready order: `core.onPersisted()` (entries become stable; the leader counts its
 * own log towards commitment only now), then that Ready's `persistedMessages` (append/vote responses, vote
 * requests: promises about what is on disk) go out — never before, and never for a save that failed (crash-stop).
 * At most `maxInflightSaves` (a Raft tunable, default 2: src/raft/node/options.ts) saves are in flight: two keep
 * the disk busy (one syncing, the next queued with everything that arrived meanwhile), more would only split the same
 * entries into more, smaller fsyncs. Past that the loop waits for the oldest before taking a Ready
 * (group commit: everything that arrived meanwhile shares the next fsync). Snapshot installs stay synchronous:
 * in-flight saves are drained first. The loop also owns time (ticks) and the network input (frames).
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { Message, NodeId, Ready, Role } from '../core/types.js';
import { validateMessage } from '../core/validate.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';

/** Follower ReadIndex requests held until the next Ready round (each carries one round of that follower's reads). */
export const maxDeferredReadIndex = 4_096;

/** At most one "ticks ran late" warning per this many ms (the count in status() has them all). */
export const stallLogIntervalMs = 10_000;

/** More than a few election timeouts' worth of catch-up ticks changes nothing further. */
export function maxCatchUpTicks(electionTimeoutTicks: number): number {
  return electionTimeoutTicks * 4;
}

export class ReadyLoop {
  private ticker: Timer | null = null;
  /** A release of the core's check-quorum hold is scheduled (holdCheckQuorumForInput). */
  private quorumReleaseScheduled = false;
  /** Monotonic time up to which the core has been ticked. */
  private lastTickAtMs: number;
  /** Ticks that came at least half an election timeout late (noteStall), and the longest such delay. */
  clockStalls = 0;
  longestClockStallMs = 0;
  private lastStallLogAtMs = -Infinity;
  private scheduled = false;
  running: Promise<void> | null = null;
  private deferredReadIndex: Message[] = [];
  /** Completion of the latest handed-out Ready that acknowledges anything (saves complete in Ready order). */
  private persistTail: Promise<void> = Promise.resolve();
  /** Completions of the saves in flight, oldest first (at most maxInflightSaves). */
  private savesInFlight: Array<Promise<void>> = [];

  constructor(private readonly ctx: NodeContext) {
    this.lastTickAtMs = ctx.clock.now();
  }

  start(): void {
    this.ticker = this.ctx.clock.setInterval(() => this.onTick(), this.ctx.settings.tickMs);
    this.kick();
  }

  stopTicking(): void {
    this.ticker?.cancel();
    this.ticker = null;
  }

  kick(): void {
    const ctx = this.ctx;
    if (this.scheduled || ctx.stopped) return;
    this.scheduled = true;
    // setImmediate (not a microtask) lets socket reads and RPCs that already arrived join this round: that is
    // what batches many proposals into one fsync.
    ctx.clock.setImmediate(() => {
      this.scheduled = false;
      if (this.running !== null || ctx.stopped) return;
      this.running = this.run().finally(() => {
        this.running = null;
        if (ctx.stopped) return;
        try {
          if (ctx.core.hasReady() || ctx.parts.reads.hasNext || ctx.parts.proposals.hasBuffered || this.deferredReadIndex.length > 0) this.kick();
        } catch (err) {
          // The storage failed between rounds (the WAL poisoned by a failed background write or fsync, such as the
          // next segment's preparation): a crash-stop, never an exception escaping the loop (it killed the process).
          ctx.crash(err);
        }
      });
    });
  }

  /** Runs `fn` when the Ready loop is idle, so it never interleaves with an apply. */
  async serialized(fn: () => Promise<void>): Promise<void> {
    while (this.running !== null) await this.running.catch(() => {});
    const run = fn();
    this.running = run.finally(() => {
      this.running = null;
      this.kick();
    });
    await this.running;
  }

  /**
   * The interval only schedules the Ready loop, which ticks the core at the start of each round: socket input that
   * arrived meanwhile (the poll phase runs before setImmediate) is stepped first. A leader starved for a while thus
   * sees the acknowledgements waiting in its sockets before check-quorum judges it, instead of stepping down over
   * messages it has not read yet.
   */
  private onTick(): void {
    if (this.ctx.stopped) return;
    if (this.running !== null) {
      // The loop is waiting (on a save beyond maxInflightSaves, the apply pipeline, a local snapshot): time passes
      // and heartbeats go out anyway, after this turn's socket input (setImmediate runs after the poll phase). A
      // leader whose fsync outlasted an election timeout otherwise sent no heartbeat for that long and was deposed
      // (failover soak traces: the leader's Ready loop waited 185 ms on its disk while its event loop ran freely).
      this.ctx.clock.setImmediate(() => {
        if (this.running === null || this.ctx.stopped) return;
        this.catchUpTicks();
        this.sendUrgentMessagesNow();
      });
    }
    this.kick();
  }

  /**
   * Advances the core by the ticks of monotonic time that really passed. One tick per timer callback is not
   * enough: after a pause (SIGSTOP, a long GC, a stalled VM) the interval fires once, and a leader would go on
   * believing in a lease that expired while it was frozen. Called at the start of every Ready round and before
   * every ReadIndex/lease decision, so a resumed leader steps down (check-quorum) before it answers a read.
   */
  catchUpTicks(): void {
    const ctx = this.ctx;
    const { tickMs, electionTimeoutTicks } = ctx.settings;
    const now = ctx.clock.now();
    let due = Math.floor((now - this.lastTickAtMs) / tickMs);
    if (due <= 0) return;
    this.noteStall(now - this.lastTickAtMs, now);
    this.lastTickAtMs += due * tickMs;
    due = Math.min(due, maxCatchUpTicks(electionTimeoutTicks));
    // A follower that has just read its leader's messages (they waited in its sockets while it stalled: the poll
    // phase steps them before this round) counts the stall as one tick. Counting it all after them made a follower
    // resumed from a stall of an election timeout pre-vote against the healthy leader it had just heard, and a
    // second stalled follower could grant it: spurious elections under load (client-failover traces). Liveness
    // only for the election timer: the core's clock still moves by the whole stall (skipTicks), so a follower read
    // lease counted in ticks ends on time; a leader catches up every tick (check-quorum, lease reads).
    if (due > 1 && ctx.core.heardFromLeaderSinceTick) {
      ctx.core.skipTicks(due - 1);
      due = 1;
    }
    // A leader that stalled judges check-quorum only after the socket input that waited meanwhile was read
    // (RaftCore.holdCheckQuorum). Ticks still count: leases expire on time.
    if (due > 1 && ctx.role === 'leader') this.holdCheckQuorumForInput();
    try {
      for (let i = 0; i < due; i++) ctx.core.tick();
    } catch (err) {
      ctx.crash(err);
    }
  }

  /**
   * Holds check-quorum for two event-loop hops: a setImmediate scheduled now may run before the next poll phase (when
   * the stall ended in the poll phase); the one it schedules runs after one.
   */
  private holdCheckQuorumForInput(): void {
    const ctx = this.ctx;
    ctx.core.holdCheckQuorum();
    if (this.quorumReleaseScheduled) return;
    this.quorumReleaseScheduled = true;
    ctx.clock.setImmediate(() => ctx.clock.setImmediate(() => {
      this.quorumReleaseScheduled = false;
      if (ctx.stopped) return;
      try {
        ctx.core.releaseCheckQuorum();
      } catch (err) {
        ctx.crash(err);
      }
      this.kick();
    }));
  }

  /**
   * A tick that came `lateMs` after the previous one. From half an election timeout on, this node's peers may have
   * timed it out (a leader sent no heartbeat meanwhile; a follower's vote may be stale): counted, and logged at most
   * once per stallLogIntervalMs, so an election under load can be told from a lost process (GC, CPU starvation, a
   * paused VM) in the node's own log. Time only: nothing here changes what the core does.
   */
  private noteStall(lateMs: number, now: number): void {
    const ctx = this.ctx;
    if (lateMs < (ctx.settings.electionTimeoutTicks * ctx.settings.tickMs) / 2) return;
    this.clockStalls++;
    this.longestClockStallMs = Math.max(this.longestClockStallMs, Math.round(lateMs));
    if (now - this.lastStallLogAtMs < stallLogIntervalMs) return;
    this.lastStallLogAtMs = now;
    ctx.log.warn({ stalledMs: Math.round(lateMs), role: ctx.core.status().role, clockStalls: this.clockStalls },
      'raft ticks ran late: this process was stalled (GC, CPU starvation or a pause); its peers may elect a new leader meanwhile');
  }

  /** Resolves once every save handed to storage so far has completed (and its acknowledgements were sent). */
  drainSaves(): Promise<void> {
    return this.persistTail;
  }

  /** Before taking a Ready: time caught up, a new read round, deferred ReadIndex requests and buffered proposals stepped. */
  private beginRound(): void {
    this.catchUpTicks();
    this.ctx.parts.reads.startRound();
    this.stepDeferredReadIndex();
    this.ctx.parts.proposals.flush();
  }

  private async run(): Promise<void> {
    const ctx = this.ctx;
    try {
      this.beginRound();
      while (!ctx.stopped && ctx.core.hasReady()) {
        if (this.savesInFlight.length >= this.ctx.settings.maxInflightSaves) {
          // Backpressure: wait for the oldest save; whatever arrives meanwhile joins the next Ready.
          while (this.savesInFlight.length >= this.ctx.settings.maxInflightSaves) await this.savesInFlight[0];
          if (ctx.stopped) break;
          this.beginRound();
          if (!ctx.core.hasReady()) break;
        }
        const rd = ctx.core.ready();
        await this.handleReady(rd);
        ctx.core.onApplied(rd);
        // Membership waiters settle only now: the core counts a conf entry as applied in onApplied().
        ctx.parts.membership.settleAfterAdvance();
        this.beginRound();
      }
    } catch (err) {
      ctx.crash(err);
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    const ctx = this.ctx;
    const { applier, reads, receiver } = ctx.parts;
    if (rd.softState !== undefined) this.onSoftState(rd.softState.role, rd.softState.leader);
    this.sendMessages(rd.messages);
    if (rd.snapshot !== undefined) {
      // Rare: installed synchronously, after every earlier save (the install replaces the log).
      await this.drainSaves();
      if (ctx.stopped) return;
      await receiver.install(rd.snapshot.metadata, rd.snapshot.data);
    }
    this.persist(rd);
    if (rd.committedEntries.length > 0) applier.dispatchCommitted(rd.committedEntries);
    if (applier.overloaded) await applier.idle();
    reads.onReadStates(rd.readStates);
    reads.serve(applier.smApplied);
    if (applier.applied - applier.lastSnapshotIndex >= ctx.settings.snapshotEveryEntries) await applier.takeLocalSnapshot();
  }

  /**
   * Hands the Ready's writes to storage without waiting. Once they (and every earlier save) are durable, the core
   * hears of it (onPersisted) and the Ready's persistedMessages are sent. A failed save crash-stops the node: the
   * completions of it and of every later Ready then do nothing (nothing is acknowledged).
   */
  private persist(rd: Ready): void {
    const ctx = this.ctx;
    let saved: Promise<void> | null = null;
    if (rd.entries.length > 0 || rd.hardState !== undefined) {
      if (rd.hardState !== undefined) ctx.term = rd.hardState.term;
      saved = ctx.storage.save(
        { entries: rd.entries, ...(rd.hardState !== undefined ? { hardState: rd.hardState } : {}) },
        { sync: rd.mustSync },
      );
    }
    const acknowledges = rd.mustSync || rd.entries.length > 0 || rd.snapshot !== undefined || rd.persistedMessages.length > 0;
    if (!acknowledges) {
      // Only a commit-index change: it needs no fsync and acknowledges nothing (a failure still stops the node).
      saved?.catch((err) => ctx.crash(err));
      return;
    }
    // The outcome is observed at once (a rejection must not go unhandled while an earlier save is still syncing).
    const failure: Promise<unknown> = saved === null ? Promise.resolve(null) : saved.then(() => null, (err: unknown) => err ?? new Error('log save failed'));
    const done = this.persistTail.then(() => failure).then((err) => {
      if (err !== null) {
        ctx.crash(err);
        return;
      }
      if (ctx.stopped) return;
      try {
        ctx.core.onPersisted(rd);
      } catch (e) {
        ctx.crash(e);
        return;
      }
      this.sendMessages(rd.persistedMessages);
      this.kick();
    });
    this.persistTail = done;
    if (saved !== null && rd.mustSync) {
      this.savesInFlight.push(done);
      void done.then(() => {
        const i = this.savesInFlight.indexOf(done);
        if (i >= 0) this.savesInFlight.splice(i, 1);
      });
    }
  }

  private onSoftState(role: Role, leader: NodeId | null): void {
    const ctx = this.ctx;
    const wasLeader = ctx.role === 'leader';
    if (role !== ctx.role) {
      ctx.role = role;
      ctx.emit('roleChange', role);
    }
    if (leader !== ctx.leader) {
      ctx.leader = leader;
      if (role !== 'leader' && !wasLeader) ctx.parts.reads.failFollowerRounds();
      ctx.emit('leaderChange', leader, ctx.core.status().term);
    }
    if (wasLeader && role !== 'leader') ctx.parts.reads.onLostLeadership();
  }

  // ---------------------------------------------------------------- network

  private sendMessages(msgs: Message[]): void {
    if (msgs.length === 0) return;
    const ctx = this.ctx;
    const byPeer = new Map<NodeId, Message[]>();
    for (const m of msgs) {
      if (m.type === 'readIndexResp') ctx.parts.reads.answerForwarded(m);
      if (m.type === 'snap') {
        ctx.parts.sender.start(m);
        continue;
      }
      let list = byPeer.get(m.to);
      if (list === undefined) byPeer.set(m.to, (list = []));
      list.push(m);
    }
    for (const [to, list] of byPeer) {
      for (const frame of framesOf(list, ctx.settings.maxBytesPerAppend)) {
        if (!ctx.transport.send(to, { k: 'r', m: frame })) {
          ctx.core.reportUnreachable(to);
          break;
        }
      }
    }
  }

  /**
   * Fast failover: the transport saw a connection to or from `peer` reset/closed or a dial refused. The core
   * decides (a follower of that leader pre-votes without waiting out its election timeout; a leader drops that
   * peer's lease acknowledgement). Time is caught up first so the decision sees the current tick.
   */
  onPeerDown(peer: NodeId): void {
    const ctx = this.ctx;
    if (ctx.stopped) return;
    this.catchUpTicks();
    if (ctx.core.reportConnectionLost(peer)) ctx.log.info({ peer, term: ctx.core.status().term }, 'lost the leader\'s connection: pre-voting without waiting for the election timeout');
    this.sendUrgentMessagesNow();
    this.kick();
  }

  /**
   * Pre-votes, heartbeats and their answers acknowledge nothing on disk: send them now rather than after the fsync the
   * Ready loop may be waiting for (under load that wait is tens of milliseconds, twice per pre-vote round trip).
   */
  private sendUrgentMessagesNow(): void {
    const msgs = this.ctx.core.takeUrgentMessages();
    if (msgs.length > 0) this.sendMessages(msgs);
  }

  /**
   * A follower's ReadIndex request is stepped at the next Ready round, after the core's clock is caught up: the
   * leader may answer it from its lease at once, and a lease must be judged on the time that really passed (a
   * leader resumed from a pause reads its sockets before its timer runs). Bounded: beyond maxDeferredReadIndex
   * requests the rest are dropped (the follower's read times out and its client retries).
   */
  private deferReadIndex(m: Message): void {
    if (this.deferredReadIndex.length >= maxDeferredReadIndex) return;
    this.deferredReadIndex.push(m);
  }

  private stepDeferredReadIndex(): void {
    if (this.deferredReadIndex.length === 0) return;
    const msgs = this.deferredReadIndex;
    this.deferredReadIndex = [];
    for (const m of msgs) this.ctx.core.step(m);
  }

  onFrame(from: NodeId, frame: unknown): void {
    const ctx = this.ctx;
    if (ctx.stopped) return;
    try {
      if (typeof frame !== 'object' || frame === null) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'frame is not an object');
      const f = frame as Record<string, unknown>;
      switch (f.k) {
        case 'r': {
          if (!Array.isArray(f.m) || f.m.length > 100_000) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'raft frame without a message list');
          let urgent = false;
          for (const raw of f.m) {
            const msg = validateMessage(raw);
            if (msg.from !== from) throw new MooringError(ErrorCode.MALFORMED_FRAME, `message claims to be from ${msg.from} on ${from}'s connection`);
            if (msg.to !== ctx.id) continue;
            if (msg.type === 'snap') continue; // snapshots only arrive through the chunked stream
            if (msg.type === 'readIndex') {
              this.deferReadIndex(msg);
              continue;
            }
            if (msg.type === 'preVote') urgent = true;
            ctx.core.step(msg);
          }
          if (urgent) this.sendUrgentMessagesNow();
          break;
        }
        case 'sc':
          ctx.parts.receiver.onSnapshotChunk(from, f);
          break;
        case 'sa':
          ctx.parts.sender.onAck(from, f);
          break;
        case 'sx':
          ctx.parts.sender.onAbort(from, f);
          ctx.parts.receiver.onAbort(from, f);
          break;
        default:
          throw new MooringError(ErrorCode.MALFORMED_FRAME, `unknown frame kind ${String(f.k)}`);
      }
    } catch (err) {
      ctx.log.warn({ from, err: err instanceof Error ? err.message : String(err) }, 'dropped a bad frame from a peer');
    }
    this.kick();
  }
}

/**
 * One peer's messages of a round, cut into frames of at most `maxEntryBytes` entry bytes each (a frame holds at
 * least one message; one append is itself bounded by maxBytesPerAppend, which the config keeps below maxFrameBytes).
 * Usually one frame. A round that catches up a follower far behind carries up to maxInflightBytes plus one append:
 * in one frame that could exceed maxFrameBytes and be refused whole by the transport.
 */
export function framesOf(msgs: Message[], maxEntryBytes: number): Message[][] {
  const frames: Message[][] = [];
  let cur: Message[] = [];
  let bytes = 0;
  for (const m of msgs) {
    let size = 0;
    if (m.entries !== undefined) for (const e of m.entries) size += e.data.length;
    if (cur.length > 0 && bytes + size > maxEntryBytes) {
      frames.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(m);
    bytes += size;
  }
  if (cur.length > 0) frames.push(cur);
  return frames;
}
