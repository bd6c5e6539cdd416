/**
 * A tiny synchronous network for RaftCore tests: every node has a MemoryStorage; `stabilize()` processes every
 * Ready (persist, send, apply, advance) and delivers every message until nothing is left, honouring drops and
 * isolations. No timers: time is `tick()`.
 */
import { RaftCore } from '../../src/raft/core/core.js';
import { decodeConfChange } from '../../src/raft/core/confchange.js';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import type { ConfState, Entry, Message, RaftConfig, ReadState, Ready } from '../../src/raft/core/types.js';
import { SeededRng } from '../../src/util/rng.js';

export interface SimNode {
  id: string;
  core: RaftCore;
  storage: MemoryStorage;
  /** Normal, non-empty entries applied, in order. */
  applied: Entry[];
  /** Every committed entry applied (including no-ops and conf changes). */
  appliedAll: Entry[];
  readStates: ReadState[];
  confState: ConfState;
  /** Async writes mode: Readys handed to "storage" whose writes have not completed yet, oldest first. */
  pending: Ready[];
}

export type Filter = (m: Message) => boolean;

export class Net {
  readonly nodes = new Map<string, SimNode>();
  /** Messages in flight (delivered by stabilize / deliver). */
  queue: Message[] = [];
  /** Sent messages, for assertions. */
  log: Message[] = [];
  private readonly cut = new Set<string>();
  private readonly isolated = new Set<string>();
  filters: Filter[] = [];
  /**
   * Pipelined storage writes (the Ready loop's AsyncStorageWrites mode): a Ready's writes complete only when
   * persist() says so (stabilize() completes them all); its persistedMessages leave then, and a restart keeps only
   * a prefix of the writes in flight.
   */
  asyncWrites = false;
  readonly seed: number;
  private readonly rng: SeededRng;
  readonly opts: Partial<RaftConfig>;

  constructor(ids: string[], opts: Partial<RaftConfig> = {}, seed = 1, learners: string[] = []) {
    this.seed = seed;
    this.rng = new SeededRng(seed);
    this.opts = opts;
    for (const id of [...ids, ...learners]) {
      this.addNode(id, MemoryStorage.withVoters(ids, learners));
    }
  }

  addNode(id: string, storage: MemoryStorage, extra: Partial<RaftConfig> = {}): SimNode {
    const core = new RaftCore({ id, storage, rng: this.rng.fork(), ...this.opts, ...extra });
    const n: SimNode = { id, core, storage, applied: [], appliedAll: [], readStates: [], confState: storage.initialState().confState, pending: [] };
    this.nodes.set(id, n);
    return n;
  }

  /** Restarts a node from its storage (memory state lost; storage kept, as after a crash with fsync). */
  restart(id: string, extra: Partial<RaftConfig> = {}): SimNode {
    const old = this.node(id);
    // Writes in flight at the crash: a prefix of them reached the disk (they were never acknowledged).
    if (old.pending.length > 0) this.persist(id, this.rng.nextInt(old.pending.length + 1));
    old.pending = [];
    const n = this.addNode(id, old.storage, { applied: 0, ...extra });
    // The state machine comes back from the storage's snapshot (entries after it are applied again).
    const snap = old.storage.snapshot();
    if (snap.metadata.index > 0 && snap.data.length > 0) {
      const image = JSON.parse(dec(snap.data)) as string[];
      n.applied = image.map((d, i) => ({ term: 0, index: i, type: 'normal' as const, data: enc(d) }));
    }
    return n;
  }

  remove(id: string): void {
    this.nodes.delete(id);
  }

  node(id: string): SimNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  core(id: string): RaftCore {
    return this.node(id).core;
  }

  cutLink(a: string, b: string): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}>${to}`);
  }

  isolate(id: string): void {
    this.isolated.add(id);
  }

  heal(): void {
    this.cut.clear();
    this.isolated.clear();
    this.filters = [];
  }

  private passes(m: Message): boolean {
    if (this.isolated.has(m.from) || this.isolated.has(m.to)) return false;
    if (this.cut.has(`${m.from}>${m.to}`)) return false;
    return this.filters.every((f) => f(m));
  }

  /** Handles one Ready of node `id` if it has one. Returns whether it did. */
  processReady(id: string): boolean {
    const n = this.node(id);
    if (!n.core.hasReady()) return false;
    const rd = n.core.ready();
    this.queue.push(...rd.messages);
    this.log.push(...rd.messages);
    const async = this.asyncWrites && rd.snapshot === undefined;
    if (async) {
      n.pending.push(rd); // written (and acknowledged) later, in order: persist()
    } else {
      this.persist(id, Infinity); // a snapshot is installed synchronously, after the writes in flight
      this.write(n, rd);
      this.queue.push(...rd.persistedMessages);
      this.log.push(...rd.persistedMessages);
    }
    if (rd.snapshot !== undefined) {
      n.confState = rd.snapshot.metadata.confState;
      // The state machine image in these tests is the list of applied entries' data, JSON-encoded.
      const image = JSON.parse(new TextDecoder().decode(rd.snapshot.data)) as string[];
      n.applied = image.map((d, i) => ({ term: 0, index: i, type: 'normal' as const, data: new TextEncoder().encode(d) }));
    }
    for (const e of rd.committedEntries) {
      n.appliedAll.push(e);
      if (e.type === 'confChange') {
        n.confState = n.core.applyConfChange(decodeConfChange(e.data));
        n.storage.setConfState(n.confState);
      } else if (e.data.length > 0) {
        n.applied.push(e);
      }
    }
    n.readStates.push(...rd.readStates);
    if (async) n.core.onApplied(rd);
    else n.core.advance(rd);
    return true;
  }

  /** Async writes: completes up to `count` of node `id`'s writes in flight, in order. Returns how many. */
  persist(id: string, count: number): number {
    const n = this.node(id);
    let done = 0;
    while (done < count && n.pending.length > 0) {
      const rd = n.pending.shift()!;
      this.write(n, rd);
      n.core.onPersisted(rd);
      this.queue.push(...rd.persistedMessages);
      this.log.push(...rd.persistedMessages);
      done++;
    }
    return done;
  }

  private write(n: SimNode, rd: Ready): void {
    if (rd.snapshot !== undefined) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
  }

  /** Delivers the queued messages once (new ones produced meanwhile stay queued). */
  deliver(): number {
    const q = this.queue;
    this.queue = [];
    let count = 0;
    for (const m of q) {
      if (!this.passes(m)) {
        // A driver learns that a snapshot did not get through and reports it (RaftNode, the simulator).
        if (m.type === 'snap') this.nodes.get(m.from)?.core.reportSnapshot(m.to, false);
        continue;
      }
      const n = this.nodes.get(m.to);
      if (n === undefined) continue;
      n.core.step(m);
      if (m.type === 'snap') this.nodes.get(m.from)?.core.reportSnapshot(m.to, true);
      count++;
    }
    return count;
  }

  /** Runs until no node has a Ready and no message is queued. */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      let busy = false;
      for (const id of [...this.nodes.keys()]) {
        while (this.processReady(id)) busy = true;
        if (this.persist(id, Infinity) > 0) busy = true;
      }
      if (this.queue.length > 0) {
        busy = true;
        this.deliver();
      }
      if (!busy) return;
    }
    throw new Error('network did not stabilize');
  }

  tick(ids?: string[]): void {
    for (const id of ids ?? [...this.nodes.keys()]) this.core(id).tick();
  }

  /** Ticks everyone n times, stabilizing after each tick. */
  tickAll(n: number, ids?: string[]): void {
    for (let i = 0; i < n; i++) {
      this.tick(ids);
      this.stabilize();
    }
  }

  campaign(id: string): void {
    this.core(id).campaign();
    this.stabilize();
  }

  leaders(): string[] {
    return [...this.nodes.values()].filter((n) => n.core.status().role === 'leader').map((n) => n.id);
  }

  leaderOf(ids: string[]): string | undefined {
    return ids.find((id) => this.core(id).status().role === 'leader');
  }

  proposeStr(id: string, s: string): { index: number; term: number } {
    const r = this.core(id).propose(new TextEncoder().encode(s));
    this.stabilize();
    return r;
  }

  appliedStrings(id: string): string[] {
    return this.node(id).applied.map((e) => new TextDecoder().decode(e.data));
  }
}

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A storage holding entries with the given terms at indexes 1..n (data = "t<term>i<index>"), voters `voters`. */
export function storageWithLog(voters: string[], terms: number[], hardTerm: number): MemoryStorage {
  const s = MemoryStorage.withVoters(voters);
  s.append(terms.map((t, i) => ({ term: t, index: i + 1, type: 'normal' as const, data: enc(`t${t}i${i + 1}`) })));
  s.setHardState({ term: hardTerm, vote: null, commit: 0 });
  return s;
}

/** The terms of a node's whole log (storage; call after stabilize). */
export function logTerms(n: SimNode): number[] {
  const out: number[] = [];
  for (let i = n.storage.firstIndex(); i <= n.storage.lastIndex(); i++) out.push(n.storage.term(i));
  return out;
}

/** Ticks the nodes `among` (stabilizing after each tick) until one of them leads; throws after `max` ticks. */
export function tickUntilLeader(net: Net, among: string[], max = 300): string {
  for (let i = 0; i < max; i++) {
    const l = net.leaderOf(among);
    if (l !== undefined) return l;
    net.tickAll(1, among);
  }
  throw new Error(`no leader among ${among.join(',')} (seed ${net.seed})`);
}
