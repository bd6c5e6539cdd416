/**
 * Deterministic simulator: N Raft cores on a virtual clock (1 tick = one step of virtual time), one seeded
 * generator for everything (each node's core gets its own fork), a faulty network (network.ts), simulated clients
 * (client-model.ts) and continuous invariant checks (invariants.ts).
 *
 * Each node is driven by the Ready contract exactly, as RaftNode's Ready loop drives it (pipelined storage writes):
 * send `messages` at once, apply `committedEntries` and report `onApplied`, and hand the Ready's snapshot, entries
 * and hard state to "storage", which persists them in order after a seeded 0..maxPersistDelayTicks ticks each; then
 * `onPersisted` and the Ready's `persistedMessages`. Up to `maxInflightSaves` Readies are being persisted at once
 * (the core keeps stepping messages and taking Readies meanwhile); a crash loses every one still in flight, exactly
 * what un-fsynced writes lose. A Ready with a snapshot, `maxInflightSaves: 1`, or a core without
 * onPersisted/onApplied (another implementation, etcd's RawNode shape) is handled serially: persist, send, apply,
 * `advance`.
 *
 * Durable per node: the log storage (MemoryStorage) and the KV state machine with its applied index (the real
 * state machine writes its applied index in the same LevelDB batch as its data). Volatile: the core, the Ready
 * being persisted, pending client requests, queued messages.
 */
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, RaftConfig, Ready, Role, Status } from '../raft/core/types.js';
import { SeededRng } from '../util/rng.js';
import { ClientPool, type ClientOptions, type ClientRequest, type ClientResponse } from './client-model.js';
import { InvariantChecker, type LogView } from './invariants.js';
import { decodeCommand, encodeCommand, KvMachine } from './kv-machine.js';
import { SimNetwork, type NetworkOptions } from './network.js';
import { raftDefaults } from '../raft/node/options.js';
import { createDefaultCore, decodeSimConfChange, newSimStorage, type SimCore, type SimStorage } from './raft-adapter.js';
import { TraceHasher } from './trace-hash.js';

/**
 * The core-only simulator's election timeout. Its network delays are whole ticks (up to maxDelayTicks 2), so
 * production's timeout (raftDefaults.electionTimeoutTicks, 6 ticks of 25 ms over sub-millisecond links) would
 * be shorter than three round trips here: split votes would repeat often enough to break any liveness bound.
 * Twenty is ten round trips, etcd's rule of thumb. The full-node simulator runs production's defaults on
 * millisecond delays.
 */
export const coreSimElectionTimeoutTicks = 20;
/**
 * The follower read lease of the 'followerLease' read mode: well under the election timeout (it must stay below it
 * by the margin), several heartbeats long, as production's 3 of 6 ticks.
 */
export const simFollowerLeaseTicks = 8;

export interface SimulatorOptions {
  /** Initial voters n1..nN. Default 3. */
  voters?: number;
  /** Extra nodes n(N+1).. that start empty and outside the configuration (for membership changes). Default 0. */
  spares?: number;
  /** Default coreSimElectionTimeoutTicks (20); see there why it is not production's. */
  electionTimeoutTicks?: number;
  heartbeatIntervalTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  readOnlyOption?: 'safe' | 'lease';
  /** RaftConfig.followerLeaseTicks: followers serve reads under a lease when they hold one. Default 0 (off). */
  followerLeaseTicks?: number;
  network?: NetworkOptions;
  /** Simulated clients; false for none. */
  clients?: ClientOptions | false;
  /** A Ready takes 0..this many ticks to persist. Default 2. */
  maxPersistDelayTicks?: number;
  /** Readies being persisted at once per node (pipelined storage writes). Default: the Raft tunable's (2); 1 = serial. */
  maxInflightSaves?: number;
  /** Probability that persisting a Ready takes more than 0 ticks. Default 0.3. */
  slowPersistProbability?: number;
  /** Take a snapshot and compact when this many applied entries sit in the log. Default 40; 0 = never. */
  compactAfterEntries?: number;
  /** Entries kept behind the snapshot when compacting (so a slightly lagging follower needs no snapshot). */
  compactKeepEntries?: number;
  /** Run the pairwise log-matching check every this many ticks. Default 25. */
  logCheckEveryTicks?: number;
  /** Messages and client requests buffered for a paused node before the oldest are lost. */
  maxPausedInboxMessages?: number;
  /**
   * On resume, tick a paused node's core for the ticks it missed (capped at 10 election timeouts) before it
   * handles what its sockets buffered, as a driver measuring elapsed monotonic time does. Lease reads rely on
   * it; false models a driver that does not, which no clock-based lease can survive. Default true.
   */
  catchUpTicksOnResume?: boolean;
  /**
   * Negative control for the durability model: a broken driver that sends `persistedMessages` before persisting
   * (acknowledging writes a crash can still lose). Runs with crashes must catch it. Default false.
   */
  unsafeAckBeforePersist?: boolean;
  /**
   * Probability that a crash also loses the hard states written without fsync since the last synced write
   * (commit-only Readies: the core sets mustSync false for them). Default 0.5.
   */
  lostUnsyncedProbability?: number;
  /** Override the Raft core (for testing the simulator with another implementation). */
  createCore?: (config: RaftConfig) => SimCore;
}

export interface SimStats {
  ticks: number;
  messagesDelivered: number;
  messagesDropped: number;
  messagesCut: number;
  messagesDuplicated: number;
  messagesReordered: number;
  readiesHandled: number;
  readiesLostInCrash: number;
  /** Readies taken while an earlier one of the node was still being persisted (pipelined storage writes). */
  readiesOverlapped: number;
  /** Crashes that lost an unsynced (commit-only) hard state. */
  unsyncedCommitsLost: number;
  entriesApplied: number;
  snapshotsInstalled: number;
  compactions: number;
  crashes: number;
  restarts: number;
  pauses: number;
  leaderChanges: number;
  maxTerm: number;
  /** Reads confirmed (read state issued) by a node that led while a newer term already had a leader. */
  staleLeaderReads: number;
  /** Reads a follower served under its read lease (no ReadIndex round). */
  followerLeaseReads: number;
  readsServed: number;
}

interface PendingRead {
  client: number;
  seq: number;
  key: string;
  index: number; // -1 until the read state arrives
}

type InboxItem =
  | { kind: 'msg'; m: Message }
  | { kind: 'req'; req: ClientRequest }
  | { kind: 'snapReport'; to: NodeId; ok: boolean };

export class SimNode {
  core: SimCore | null = null;
  storage: SimStorage;
  sm = new KvMachine();
  /** Readies being persisted, oldest first; `full`: handled serially (persist, then apply and advance). */
  inflight: Array<{ rd: Ready; doneAt: number; full: boolean }> = [];
  paused = false;
  pausedAt = 0;
  snapshotsInstalled = 0;
  /** Highest durable commit index whose entries were reported to the checker. */
  commitNoted = 0;
  /**
   * The hard state last written with fsync, while later hard states (commit-only Readies, mustSync false) were
   * written without it; null when everything written is synced. A crash may lose the unsynced ones.
   */
  syncedHardState: HardState | null = null;
  /** When set, every Ready of this node takes exactly this many ticks to persist (scenario control). */
  persistDelayTicks: number | null = null;
  /** Ticks of the node's own clock per simulator tick (clock skew). */
  tickRate = 1;
  private tickCredit = 0;
  role: Role = 'follower';
  term = 0;
  leader: NodeId | null = null;
  readonly inbox: InboxItem[] = [];
  readonly pendingWrites = new Set<string>();
  readonly pendingReads = new Map<string, PendingRead>();
  readonly waitingReads: PendingRead[] = [];

  constructor(
    readonly id: NodeId,
    readonly rng: SeededRng,
    /** The founding voters when this node is one of them; null for a node that joins later (empty storage). */
    founders: NodeId[] | null,
  ) {
    if (founders !== null) this.sm.skipTo(1);
    this.storage = newSimStorage(founders, this.sm.snapshot());
  }

  get up(): boolean {
    return this.core !== null;
  }

  /** How many core ticks to run this simulator tick. */
  ticksDue(): number {
    this.tickCredit += this.tickRate;
    const n = Math.floor(this.tickCredit);
    this.tickCredit -= n;
    return n;
  }

  logView(): LogView {
    const snap = this.storage.snapshot().metadata;
    const first = this.storage.firstIndex();
    const last = this.storage.lastIndex();
    const entries = last >= first ? this.storage.entries(first, last + 1, Number.MAX_SAFE_INTEGER) : [];
    return { node: this.id, snapshotIndex: first - 1, snapshotTerm: snap.index === first - 1 ? snap.term : 0, entries };
  }
}

export class Simulator {
  readonly rng: SeededRng;
  readonly network: SimNetwork;
  readonly checker = new InvariantChecker();
  readonly nodes = new Map<NodeId, SimNode>();
  readonly ids: NodeId[];
  readonly clients: ClientPool | null;
  readonly trace = new TraceHasher();
  readonly stats: SimStats = {
    ticks: 0, messagesDelivered: 0, messagesDropped: 0, messagesCut: 0, messagesDuplicated: 0, messagesReordered: 0,
    readiesHandled: 0, readiesLostInCrash: 0, readiesOverlapped: 0, unsyncedCommitsLost: 0, entriesApplied: 0, snapshotsInstalled: 0, compactions: 0, crashes: 0,
    restarts: 0, pauses: 0, leaderChanges: 0, maxTerm: 0, staleLeaderReads: 0, followerLeaseReads: 0, readsServed: 0,
  };
  now = 0;
  private eventSeq = 0;
  private readonly persistRng: SeededRng;
  private readonly clientNetRng: SeededRng;
  private readonly clientQueue = new Map<number, { to: NodeId | null; req?: ClientRequest; resp?: ClientResponse }[]>();
  private nextReadId = 1;
  private readonly leaderChecked = new Set<string>();
  readonly opts: Required<Omit<SimulatorOptions, 'network' | 'clients' | 'createCore'>>;
  private readonly createCore: (config: RaftConfig) => SimCore;
  /** Probe ids seen applied by any node (liveness). */
  readonly probesApplied = new Set<number>();
  /** Hook for tests: called for every applied normal entry. */
  onApplied: ((node: NodeId, e: Entry) => void) | null = null;

  constructor(seed: number, options: SimulatorOptions = {}) {
    this.rng = new SeededRng(seed);
    this.opts = {
      voters: options.voters ?? 3,
      spares: options.spares ?? 0,
      electionTimeoutTicks: options.electionTimeoutTicks ?? coreSimElectionTimeoutTicks,
      heartbeatIntervalTicks: options.heartbeatIntervalTicks ?? raftDefaults.heartbeatIntervalTicks,
      preVote: options.preVote ?? raftDefaults.preVote,
      checkQuorum: options.checkQuorum ?? raftDefaults.checkQuorum,
      readOnlyOption: options.readOnlyOption ?? (options.clients && (options.clients.readMode === 'lease' || options.clients.readMode === 'followerLease') ? 'lease' : 'safe'),
      followerLeaseTicks: options.followerLeaseTicks ?? (options.clients && options.clients.readMode === 'followerLease' ? simFollowerLeaseTicks : raftDefaults.followerLeaseTicks),
      maxPersistDelayTicks: options.maxPersistDelayTicks ?? 2,
      maxInflightSaves: options.maxInflightSaves ?? raftDefaults.maxInflightSaves,
      slowPersistProbability: options.slowPersistProbability ?? 0.3,
      compactAfterEntries: options.compactAfterEntries ?? 40,
      compactKeepEntries: options.compactKeepEntries ?? 5,
      logCheckEveryTicks: options.logCheckEveryTicks ?? 25,
      maxPausedInboxMessages: options.maxPausedInboxMessages ?? 5000,
      catchUpTicksOnResume: options.catchUpTicksOnResume ?? true,
      unsafeAckBeforePersist: options.unsafeAckBeforePersist ?? false,
      lostUnsyncedProbability: options.lostUnsyncedProbability ?? 0.5,
    };
    this.createCore = options.createCore ?? createDefaultCore;
    this.network = new SimNetwork(this.rng.fork(), options.network);
    this.network.onLost = (m) => {
      if (m.type === 'snap') this.reportSnapshot(m.from, m.to, false);
    };
    this.persistRng = this.rng.fork();
    this.clientNetRng = this.rng.fork();
    const total = this.opts.voters + this.opts.spares;
    this.ids = Array.from({ length: total }, (_, i) => `n${i + 1}`);
    const voters = this.ids.slice(0, this.opts.voters);
    for (const id of this.ids) {
      const node = new SimNode(id, this.rng.fork(), voters.includes(id) ? voters : null);
      this.nodes.set(id, node);
      if (node.sm.appliedIndex > 0) this.checker.onSnapshotApplied(id, node.sm.appliedIndex);
      this.startCore(node);
    }
    const clientRng = this.rng.fork();
    this.clients = options.clients === false ? null : new ClientPool(clientRng, this.ids, () => ++this.eventSeq, options.clients ?? {});
  }

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    if (!n) throw new RangeError(`no node ${id}`);
    return n;
  }

  private startCore(node: SimNode): void {
    // As RaftNode does: the core starts from the snapshot (membership and applied index), and the entries after it
    // are delivered again; the driver skips the commands its durable state machine already holds but re-applies
    // their membership changes to the core.
    const snap = node.storage.snapshot().metadata;
    node.storage.setConfState(snap.confState);
    node.core = this.createCore({
      id: node.id,
      storage: node.storage,
      rng: node.rng.fork(),
      electionTimeoutTicks: this.opts.electionTimeoutTicks,
      heartbeatIntervalTicks: this.opts.heartbeatIntervalTicks,
      preVote: this.opts.preVote,
      checkQuorum: this.opts.checkQuorum,
      readOnlyOption: this.opts.readOnlyOption,
      ...(this.opts.followerLeaseTicks > 0 ? { followerLeaseTicks: this.opts.followerLeaseTicks } : {}),
      applied: snap.index,
      maxEntriesPerAppend: 64,
    });
    const st = node.core.status();
    node.role = st.role;
    node.term = st.term;
    node.leader = st.leader;
  }

  // ------------------------------------------------------------------ faults

  crash(id: NodeId): void {
    const n = this.node(id);
    if (!n.up) return;
    this.stats.crashes++;
    this.stats.readiesLostInCrash += n.inflight.length;
    if (n.syncedHardState !== null && this.persistRng.nextFloat() < this.opts.lostUnsyncedProbability) {
      // The page cache dies with the machine: back to the last fsynced commit (never below the snapshot point,
      // which the real log store writes synced).
      const hs = n.storage.initialState().hardState;
      const commit = Math.max(n.syncedHardState.commit, n.storage.snapshot().metadata.index);
      n.storage.setHardState({ ...hs, commit });
      this.stats.unsyncedCommitsLost++;
    }
    n.syncedHardState = null;
    n.core = null;
    n.inflight = [];
    n.paused = false;
    n.inbox.length = 0;
    n.pendingWrites.clear();
    n.pendingReads.clear();
    n.waitingReads.length = 0;
    n.role = 'follower';
    n.leader = null;
    this.trace.add(`crash ${this.now} ${id}`);
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    if (n.up) return;
    this.stats.restarts++;
    this.startCore(n);
    const st = n.core!.status();
    this.checker.onRestart(id, st.commit, n.storage.initialState().hardState.commit, n.sm.appliedIndex);
    this.trace.add(`restart ${this.now} ${id}`);
  }

  pause(id: NodeId): void {
    const n = this.node(id);
    if (!n.up || n.paused) return;
    this.stats.pauses++;
    n.paused = true;
    n.pausedAt = this.now;
    this.trace.add(`pause ${this.now} ${id}`);
  }

  resume(id: NodeId): void {
    const n = this.node(id);
    if (!n.paused) return;
    n.paused = false;
    this.trace.add(`resume ${this.now} ${id}`);
    if (this.opts.catchUpTicksOnResume) {
      const missed = Math.min(this.now - n.pausedAt, 10 * this.opts.electionTimeoutTicks);
      for (let i = 0; i < missed; i++) n.core!.tick();
      // Whatever the catch-up ticks decided (stepping down) is handled before the buffered input.
      this.processReady(n);
    }
    // The process wakes up and reads what its sockets buffered meanwhile.
    const items = n.inbox.splice(0);
    for (const it of items) {
      if (it.kind === 'msg') this.stepNode(n, it.m);
      else if (it.kind === 'req') this.handleRequest(n, it.req);
      else n.core!.reportSnapshot(it.to, it.ok);
    }
  }

  /** Heals every network fault, restarts crashed nodes, resumes paused ones, resets clock skew. */
  healAll(): void {
    this.network.heal();
    for (const n of this.nodes.values()) {
      n.tickRate = 1;
      if (!n.up) this.restart(n.id);
      if (n.paused) this.resume(n.id);
    }
    this.trace.add(`heal ${this.now}`);
  }

  // ------------------------------------------------------------------ operations for scenarios

  /** The node that believes it leads with the highest term, among running nodes. */
  leader(): SimNode | null {
    let best: SimNode | null = null;
    for (const n of this.nodes.values()) {
      if (n.up && !n.paused && n.role === 'leader' && (!best || n.term > best.term)) best = n;
    }
    return best;
  }

  status(id: NodeId): Status | null {
    return this.node(id).core?.status() ?? null;
  }

  /** Proposes `data` at a node; returns false when the core refuses it. */
  propose(id: NodeId, data: Uint8Array): boolean {
    const n = this.node(id);
    if (!n.core || n.paused) return false;
    try {
      n.core.propose(data);
      return true;
    } catch {
      return false;
    }
  }

  proposeProbe(probe: number): boolean {
    const l = this.leader();
    return l ? this.propose(l.id, encodeCommand({ t: 'probe', p: probe })) : false;
  }

  proposeConfChange(id: NodeId, cc: ConfChange): boolean {
    const n = this.node(id);
    if (!n.core || n.paused) return false;
    try {
      n.core.proposeConfChange(cc);
      return true;
    } catch {
      return false;
    }
  }

  transferLeadership(from: NodeId, to: NodeId): boolean {
    const n = this.node(from);
    if (!n.core || n.paused) return false;
    try {
      n.core.transferLeadership(to);
      return true;
    } catch {
      return false;
    }
  }

  /** Runs until `pred` holds (checked after each tick) or `maxTicks` pass; returns whether it held. */
  runUntil(pred: () => boolean, maxTicks: number): boolean {
    for (let i = 0; i < maxTicks; i++) {
      if (pred()) return true;
      this.tick();
    }
    return pred();
  }

  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) this.tick();
  }

  // ------------------------------------------------------------------ the clock

  tick(): void {
    this.now++;
    this.stats.ticks++;
    this.checker.now = this.now;
    const now = this.now;
    for (const m of this.network.deliverDue(now)) {
      const n = this.nodes.get(m.to);
      if (!n || !n.up) {
        if (m.type === 'snap') this.reportSnapshot(m.from, m.to, false);
        continue;
      }
      this.trace.addMessage(now, m);
      if (n.paused) this.bufferPaused(n, { kind: 'msg', m });
      else this.stepNode(n, m);
      // The snapshot stream finished: tell the sender, as the transport does (etcd's ReportSnapshot contract).
      if (m.type === 'snap') this.reportSnapshot(m.from, m.to, true);
    }
    const due = this.clientQueue.get(now);
    if (due) {
      this.clientQueue.delete(now);
      for (const d of due) {
        if (d.resp) {
          this.trace.add(`resp ${now} ${d.resp.client} ${d.resp.seq} ${d.resp.ok}`);
          this.clients?.onResponse(d.resp, now);
          continue;
        }
        const n = this.nodes.get(d.to!);
        if (!n || !n.up) continue;
        if (n.paused) this.bufferPaused(n, { kind: 'req', req: d.req! });
        else this.handleRequest(n, d.req!);
      }
    }
    for (const n of this.nodes.values()) {
      if (!n.core || n.paused) continue;
      for (let k = n.ticksDue(); k > 0; k--) n.core.tick();
    }
    if (this.clients) {
      for (const { to, req } of this.clients.tick(now)) this.sendClient(now, { to, req });
    }
    for (const n of this.nodes.values()) {
      if (n.core && !n.paused) this.processReady(n);
    }
    if (this.opts.logCheckEveryTicks > 0 && now % this.opts.logCheckEveryTicks === 0) this.checkLogs();
  }

  checkLogs(): void {
    this.checker.checkLogs([...this.nodes.values()].map((n) => n.logView()));
  }

  /** Tells a leader how its snapshot send to `to` ended (it stops waiting on that follower otherwise). */
  private reportSnapshot(from: NodeId, to: NodeId, ok: boolean): void {
    const n = this.nodes.get(from);
    if (!n || !n.core) return;
    if (n.paused) this.bufferPaused(n, { kind: 'snapReport', to, ok });
    else n.core.reportSnapshot(to, ok);
  }

  private bufferPaused(n: SimNode, item: InboxItem): void {
    if (n.inbox.length >= this.opts.maxPausedInboxMessages) n.inbox.shift();
    n.inbox.push(item);
  }

  private sendClient(now: number, d: { to: NodeId | null; req?: ClientRequest; resp?: ClientResponse }): void {
    const at = now + 1 + this.clientNetRng.nextInt(2);
    let q = this.clientQueue.get(at);
    if (!q) this.clientQueue.set(at, (q = []));
    q.push(d);
  }

  private respond(resp: ClientResponse): void {
    this.sendClient(this.now, { to: null, resp });
  }

  private stepNode(n: SimNode, m: Message): void {
    try {
      // Entries are shared between nodes in memory; give each receiver its own array.
      n.core!.step(m.entries ? { ...m, entries: m.entries.slice() } : m);
    } catch (e) {
      this.checker.violations.push(`tick ${this.now}: ${n.id} threw on ${m.type} from ${m.from}: ${(e as Error).message}`);
    }
  }

  private handleRequest(n: SimNode, req: ClientRequest): void {
    const core = n.core!;
    if (req.kind === 'read') {
      if (req.unsafe) {
        this.noteRead(n);
        this.respond({ client: req.client, seq: req.seq, ok: true, reply: null, value: n.sm.get(req.key) });
        return;
      }
      const id = `r${this.nextReadId++}`;
      try {
        // A follower holding a read lease answers from its own state once it has applied the index the lease names.
        const leaseIndex = this.opts.followerLeaseTicks > 0 && n.role === 'follower' ? (core.followerLeaseRead?.() ?? null) : null;
        if (leaseIndex !== null) {
          this.stats.followerLeaseReads++;
          n.waitingReads.push({ client: req.client, seq: req.seq, key: req.key, index: leaseIndex });
          this.serveReads(n);
          return;
        }
        core.readIndex(new TextEncoder().encode(id));
        n.pendingReads.set(id, { client: req.client, seq: req.seq, key: req.key, index: -1 });
      } catch (e) {
        this.respond({ client: req.client, seq: req.seq, ok: false, code: errCode(e), leaderHint: n.leader });
      }
      return;
    }
    if (n.role !== 'leader') {
      this.respond({ client: req.client, seq: req.seq, ok: false, code: 'NOT_LEADER', leaderHint: n.leader });
      return;
    }
    try {
      core.propose(encodeCommand(req.cmd));
      n.pendingWrites.add(`${req.client}:${req.seq}`);
    } catch (e) {
      this.respond({ client: req.client, seq: req.seq, ok: false, code: errCode(e), leaderHint: n.leader });
    }
  }

  private processReady(n: SimNode): void {
    // Saves complete in order (the log storage serializes them).
    while (n.core && n.inflight.length > 0 && this.now >= n.inflight[0]!.doneAt) {
      const { rd, full } = n.inflight.shift()!;
      if (full) this.finishReady(n, rd);
      else this.finishSave(n, rd);
    }
    // A few Readies per tick at most, so a node that always has work cannot stall the clock.
    for (let i = 0; i < 4 && n.core && n.core.hasReady(); i++) {
      if (n.inflight.length >= this.opts.maxInflightSaves || n.inflight.some((f) => f.full)) return; // backpressure
      const core = n.core;
      const rd = core.ready();
      this.stats.readiesHandled++;
      if (n.inflight.length > 0) this.stats.readiesOverlapped++;
      if (rd.softState) this.onSoftState(n, rd.softState.role, rd.softState.leader, rd.hardState?.term);
      else if (rd.hardState) n.term = rd.hardState.term;
      // The core confirmed these reads now: a leader doing so while a newer term has a leader broke its lease.
      if (rd.readStates.length > 0 && n.role === 'leader' && this.checker.maxLeaderTerm() > n.term) {
        this.stats.staleLeaderReads += rd.readStates.length;
      }
      for (const m of rd.messages) this.network.send(m, this.now);
      if (this.opts.unsafeAckBeforePersist) for (const m of rd.persistedMessages) this.network.send(m, this.now);
      const hasSnapshot = rd.snapshot !== undefined && rd.snapshot.metadata.index > 0;
      const pipelined = this.opts.maxInflightSaves > 1 && !hasSnapshot && core.onPersisted !== undefined && core.onApplied !== undefined;
      if (!pipelined) {
        // A snapshot is installed after every earlier save (it replaces the log), as RaftNode does.
        while (n.inflight.length > 0) this.finishSave(n, n.inflight.shift()!.rd);
      } else {
        this.applyReady(n, rd);
        core.onApplied!(rd);
      }
      const delay = this.persistDelay(n);
      const last = n.inflight.length > 0 ? n.inflight[n.inflight.length - 1]!.doneAt : 0;
      if (delay === 0 && n.inflight.length === 0) {
        if (pipelined) this.finishSave(n, rd);
        else this.finishReady(n, rd);
        continue;
      }
      n.inflight.push({ rd, doneAt: Math.max(this.now + delay, last), full: !pipelined });
    }
  }

  /** Ticks this Ready takes to persist (0: at once). */
  private persistDelay(n: SimNode): number {
    if (n.persistDelayTicks !== null) return Math.max(0, n.persistDelayTicks);
    const slow = this.opts.maxPersistDelayTicks > 0 && this.persistRng.nextFloat() < this.opts.slowPersistProbability;
    return slow ? 1 + this.persistRng.nextInt(this.opts.maxPersistDelayTicks) : 0;
  }

  private onSoftState(n: SimNode, role: Role, leader: NodeId | null, term: number | undefined): void {
    const st = n.core!.status();
    n.term = term ?? st.term;
    if (role === 'leader' && n.role !== 'leader') this.stats.leaderChanges++;
    n.role = role;
    n.leader = leader;
    if (role === 'leader') this.checker.onLeader(n.id, st.term);
    if (st.term > this.stats.maxTerm) this.stats.maxTerm = st.term;
  }

  /** Serially: persist, acknowledge, apply, advance. */
  private finishReady(n: SimNode, rd: Ready): void {
    this.persistReady(n, rd);
    // 3. Acknowledge what was persisted.
    if (!this.opts.unsafeAckBeforePersist) for (const m of rd.persistedMessages) this.network.send(m, this.now);
    // 4. Apply.
    this.applyReady(n, rd);
    // 5. Advance.
    n.core!.advance(rd);
    this.afterPersisted(n);
  }

  /** Pipelined: the Ready's save completed (its entries were applied when it was taken). */
  private finishSave(n: SimNode, rd: Ready): void {
    this.persistReady(n, rd);
    n.core!.onPersisted!(rd);
    if (!this.opts.unsafeAckBeforePersist) for (const m of rd.persistedMessages) this.network.send(m, this.now);
    this.afterPersisted(n);
  }

  private persistReady(n: SimNode, rd: Ready): void {
    const storage = n.storage;
    // 2. Persist: snapshot, entries, hard state.
    if (rd.snapshot && rd.snapshot.metadata.index > 0) storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) {
      storage.append(rd.entries);
      this.checker.onPersisted(n.id, rd.entries);
    }
    if (rd.hardState) {
      if (!rd.mustSync && n.syncedHardState === null) n.syncedHardState = storage.initialState().hardState;
      storage.setHardState(rd.hardState);
      this.checker.onCommit(n.id, rd.hardState.commit);
      // Every entry up to a durable commit index is committed: remember its term (leader completeness).
      const from = Math.max(n.commitNoted + 1, storage.firstIndex());
      for (let i = from; i <= rd.hardState.commit && i <= storage.lastIndex(); i++) this.checker.onCommitted(n.id, i, storage.term(i));
      if (rd.hardState.commit > n.commitNoted) n.commitNoted = rd.hardState.commit;
    }
    if (rd.mustSync) n.syncedHardState = null; // the fsync covers every earlier write too
  }

  private applyReady(n: SimNode, rd: Ready): void {
    if (rd.snapshot && rd.snapshot.metadata.index > 0) {
      n.sm = KvMachine.restore(rd.snapshot.data);
      n.sm.appliedIndex = rd.snapshot.metadata.index;
      this.checker.onSnapshotApplied(n.id, rd.snapshot.metadata.index);
      this.stats.snapshotsInstalled++;
      n.snapshotsInstalled++;
      this.trace.add(`snap ${this.now} ${n.id} ${rd.snapshot.metadata.index}`);
    }
    for (const e of rd.committedEntries) this.applyEntry(n, e);
    for (const rs of rd.readStates) {
      const id = new TextDecoder().decode(rs.context);
      const pr = n.pendingReads.get(id);
      if (!pr) continue;
      n.pendingReads.delete(id);
      pr.index = rs.index;
      n.waitingReads.push(pr);
    }
    this.serveReads(n);
  }

  private afterPersisted(n: SimNode): void {
    if (n.role === 'leader' && !this.leaderChecked.has(`${n.id}@${n.term}`)) {
      this.leaderChecked.add(`${n.id}@${n.term}`);
      this.checker.checkLeaderCompleteness(n.id, n.term, n.logView());
    }
    this.maybeCompact(n);
  }

  private applyEntry(n: SimNode, e: Entry): void {
    if (e.index <= n.sm.appliedIndex) {
      // Re-delivered after a restart: the durable state machine has it; only the core needs membership again.
      if (e.type === 'confChange' && e.data.length > 0) {
        n.storage.setConfState(n.core!.applyConfChange(decodeSimConfChange(e.data)));
      }
      return;
    }
    this.checker.onApply(n.id, e);
    this.stats.entriesApplied++;
    if (e.type === 'confChange') {
      n.sm.skipTo(e.index);
      if (e.data.length === 0) return;
      const cs: ConfState = n.core!.applyConfChange(decodeSimConfChange(e.data));
      n.storage.setConfState(cs);
      // A snapshot taken before this change would not name a node it adds (etcd's core ignores such a snapshot;
      // ours accepts it since 4e0386f and learns the addition from the entries after it): snapshot now anyway,
      // so the joiner's snapshot already says it is a member.
      if (e.index > n.storage.snapshot().metadata.index) n.storage.createSnapshot(e.index, cs, n.sm.snapshot());
      this.trace.add(`conf ${this.now} ${n.id} ${e.index} ${cs.voters.join(',')}|${cs.learners.join(',')}|${cs.votersOutgoing.join(',')}`);
      return;
    }
    this.onApplied?.(n.id, e);
    const res = n.sm.apply(e.index, e.data);
    if (e.data.length > 0) {
      const cmd = decodeCommand(e.data);
      if (cmd && cmd.t === 'probe') this.probesApplied.add(cmd.p);
    }
    if (!res) return;
    const key = `${res.clientId}:${res.seq}`;
    if (n.pendingWrites.has(key)) {
      n.pendingWrites.delete(key);
      this.respond({ client: res.clientId, seq: res.seq, ok: true, reply: res.reply });
    }
  }

  private noteRead(_n: SimNode): void {
    this.stats.readsServed++;
  }

  private serveReads(n: SimNode): void {
    if (n.waitingReads.length === 0) return;
    const keep: PendingRead[] = [];
    for (const r of n.waitingReads) {
      if (n.sm.appliedIndex >= r.index) {
        this.noteRead(n);
        this.respond({ client: r.client, seq: r.seq, ok: true, reply: null, value: n.sm.get(r.key) });
      } else keep.push(r);
    }
    n.waitingReads.length = 0;
    n.waitingReads.push(...keep);
  }

  private maybeCompact(n: SimNode): void {
    const every = this.opts.compactAfterEntries;
    if (every <= 0) return;
    const applied = n.sm.appliedIndex;
    const first = n.storage.firstIndex();
    if (applied - first + 1 < every || applied > n.storage.lastIndex()) return;
    const cs = n.storage.initialState().confState;
    if (applied > n.storage.snapshot().metadata.index) n.storage.createSnapshot(applied, cs, n.sm.snapshot());
    const upTo = applied - this.opts.compactKeepEntries;
    if (upTo >= first) n.storage.compact(upTo);
    this.stats.compactions++;
  }

  /** Merges network counters into stats and returns them. */
  finalStats(): SimStats {
    const ns = this.network.stats;
    this.stats.messagesDelivered = ns.delivered;
    this.stats.messagesDropped = ns.dropped;
    this.stats.messagesCut = ns.cut;
    this.stats.messagesDuplicated = ns.duplicated;
    this.stats.messagesReordered = ns.reordered;
    return this.stats;
  }
}

function errCode(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' ? code : 'INTERNAL';
}
