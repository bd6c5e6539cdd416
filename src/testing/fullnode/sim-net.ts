/**
 * The full-node simulator's network: PeerTransport endpoints joined by a wire that delays (virtual ms), drops,
 * duplicates, reorders and partitions frames, as the core-only simulator's network does with messages. Frames
 * are copied through msgpack, as the TCP transport serializes them. A per-message interceptor sees every Raft
 * message by type (and every snapshot-stream frame) and may drop it: scripted scenarios use it (Figure 8).
 */
import { Packr } from 'msgpackr';
import type { Message, MessageType, NodeId } from '../../raft/core/types.js';
import type { PeerAddress, PeerTransport } from '../../transport/types.js';
import type { SeededRng } from '../../util/rng.js';
import type { LinkRates } from '../network.js';
import { chance } from './rand.js';
import type { NodeClock, SimScheduler } from './scheduler.js';

const packr = new Packr({ useRecords: false });

/** What an interceptor sees: one Raft message, or a snapshot-stream frame ('snapshotChunk'/'snapshotAck'/'snapshotAbort'). */
export interface WireItem {
  from: NodeId;
  to: NodeId;
  type: MessageType | 'snapshotChunk' | 'snapshotAck' | 'snapshotAbort';
  /** The Raft message (absent for snapshot-stream frames). */
  message?: Message;
}

/** Returns false to drop the item. */
export type Interceptor = (item: WireItem) => boolean;

export interface WireOptions {
  minDelayMs: number;
  maxDelayMs: number;
  /** Extra delay of a reordered frame, up to this much. */
  maxReorderExtraMs: number;
}

export const defaultWireOptions: WireOptions = { minDelayMs: 0.1, maxDelayMs: 2, maxReorderExtraMs: 300 };

export interface WireStats {
  frames: number;
  dropped: number;
  cut: number;
  duplicated: number;
  reordered: number;
  intercepted: number;
}

interface Endpoint {
  clock: NodeClock;
  handler: ((from: NodeId, frame: unknown) => void) | null;
}

const snapshotKinds: Record<string, WireItem['type']> = { sc: 'snapshotChunk', sa: 'snapshotAck', sx: 'snapshotAbort' };

export class SimWire {
  rates: LinkRates = { drop: 0, duplicate: 0, reorder: 0 };
  readonly stats: WireStats = { frames: 0, dropped: 0, cut: 0, duplicated: 0, reordered: 0, intercepted: 0 };
  private readonly cuts = new Set<string>();
  private readonly endpoints = new Map<NodeId, Endpoint>();
  private readonly interceptors: Interceptor[] = [];

  constructor(private readonly sched: SimScheduler, private readonly rng: SeededRng, readonly opts: WireOptions = defaultWireOptions) {}

  /** Adds a per-message filter; returns a function that removes it. */
  intercept(f: Interceptor): () => void {
    this.interceptors.push(f);
    return () => {
      const i = this.interceptors.indexOf(f);
      if (i >= 0) this.interceptors.splice(i, 1);
    };
  }

  cut(from: NodeId, to: NodeId): void {
    this.cuts.add(`${from}\u0000${to}`);
  }

  /** Isolates `groups` from each other (nodes in no group are cut from everyone). */
  partition(groups: NodeId[][], all: NodeId[]): void {
    this.heal();
    const side = new Map<NodeId, number>();
    groups.forEach((g, i) => g.forEach((id) => side.set(id, i)));
    for (const a of all) for (const b of all) if (a !== b && side.get(a) !== side.get(b)) this.cut(a, b);
    for (const a of all) if (!side.has(a)) for (const b of all) if (a !== b) { this.cut(a, b); this.cut(b, a); }
  }

  heal(): void {
    this.cuts.clear();
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cuts.has(`${from}\u0000${to}`);
  }

  /** A transport endpoint for one incarnation of node `id`. */
  endpoint(id: NodeId, clock: NodeClock): SimTransport {
    const ep: Endpoint = { clock, handler: null };
    this.endpoints.set(id, ep);
    return new SimTransport(this, id, ep);
  }

  /** @internal */
  detach(id: NodeId, ep: Endpoint): void {
    if (this.endpoints.get(id) === ep) this.endpoints.delete(id);
  }

  /** @internal */
  send(from: NodeId, to: NodeId, frame: unknown): void {
    this.stats.frames++;
    const filtered = this.filter(from, to, frame);
    if (filtered === null) return;
    if (chance(this.rng, this.rates.drop)) {
      this.stats.dropped++;
      return;
    }
    const bytes = packr.pack(filtered);
    const copies = chance(this.rng, this.rates.duplicate) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let c = 0; c < copies; c++) {
      let delay = this.opts.minDelayMs + this.rng.nextFloat() * (this.opts.maxDelayMs - this.opts.minDelayMs);
      if (chance(this.rng, this.rates.reorder)) {
        this.stats.reordered++;
        delay += this.rng.nextFloat() * this.opts.maxReorderExtraMs;
      }
      if (this.isCut(from, to)) {
        this.stats.cut++;
        return;
      }
      this.sched.after(delay, () => {
        // A partition also swallows frames already in flight.
        if (this.isCut(from, to)) {
          this.stats.cut++;
          return;
        }
        const ep = this.endpoints.get(to);
        if (ep === undefined) return;
        ep.clock.guard(() => ep.handler?.(from, packr.unpack(bytes)))();
      });
    }
  }

  private filter(from: NodeId, to: NodeId, frame: unknown): unknown {
    if (this.interceptors.length === 0) return frame;
    const f = frame as { k?: string; m?: Message[] };
    if (f.k === 'r' && Array.isArray(f.m)) {
      const kept = f.m.filter((m) => this.allowed({ from, to, type: m.type, message: m }));
      if (kept.length === 0) return null;
      return kept.length === f.m.length ? frame : { ...f, m: kept };
    }
    const type = snapshotKinds[f.k ?? ''];
    if (type !== undefined && !this.allowed({ from, to, type })) return null;
    return frame;
  }

  private allowed(item: WireItem): boolean {
    for (const f of this.interceptors) {
      if (!f(item)) {
        this.stats.intercepted++;
        return false;
      }
    }
    return true;
  }
}

export class SimTransport implements PeerTransport {
  private closed = false;

  constructor(private readonly wire: SimWire, private readonly id: NodeId, private readonly ep: Endpoint) {}

  async start(): Promise<void> {}

  send(to: NodeId, frame: unknown): boolean {
    if (this.closed) return false;
    this.wire.send(this.id, to, frame);
    return true;
  }

  onFrame(handler: (from: NodeId, frame: unknown) => void): void {
    this.ep.handler = handler;
  }

  setPeer(_peer: PeerAddress): void {}

  removePeer(_id: NodeId): void {}

  async close(): Promise<void> {
    this.closed = true;
    this.ep.handler = null;
    this.wire.detach(this.id, this.ep);
  }
}
