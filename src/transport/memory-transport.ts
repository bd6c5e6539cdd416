/**
 * In-memory PeerTransport for tests and single-process embedding. Frames are delivered asynchronously
 * (a macrotask later, in send order per pair) and deep-copied through the real codec, so a receiver never shares
 * objects with the sender and anything the TCP transport cannot carry fails here too.
 * Fault hooks: drop a fraction of frames, or partition nodes (one-way or both ways).
 */
import { decodePayload, defaultMaxFrameBytes, encodePayload } from './codec.js';
import type { PeerAddress, PeerId, PeerTransport } from './types.js';

export const defaultMemoryMaxQueuedFrames = 4096;

export class MemoryNetwork {
  private readonly nodes = new Map<PeerId, MemoryPeerTransport>();
  private readonly blocked = new Set<string>();
  private dropRate = 0;
  private random: () => number = Math.random;

  /** Creates the transport for `id` on this network (it receives once start() is called). */
  transport(id: PeerId, opts: { peers?: PeerId[]; maxQueuedFrames?: number } = {}): MemoryPeerTransport {
    const t = new MemoryPeerTransport(this, id, opts.maxQueuedFrames ?? defaultMemoryMaxQueuedFrames);
    for (const p of opts.peers ?? []) t.setPeer({ id: p, host: 'memory', port: 0 });
    return t;
  }

  /** Drop each frame with this probability; `random` lets a test make the choice deterministic. */
  setDropRate(rate: number, random?: () => number): void {
    this.dropRate = rate;
    if (random !== undefined) this.random = random;
  }

  /** Blocks frames from `a` to `b` (and `b` to `a` unless oneWay). */
  partition(a: PeerId, b: PeerId, oneWay = false): void {
    this.blocked.add(`${a}\u0000${b}`);
    if (!oneWay) this.blocked.add(`${b}\u0000${a}`);
  }

  /** Cuts `id` off from every other node. */
  isolate(id: PeerId): void {
    for (const other of this.nodes.keys()) if (other !== id) this.partition(id, other);
  }

  heal(): void {
    this.blocked.clear();
  }

  /** @internal */
  register(t: MemoryPeerTransport): void {
    this.nodes.set(t.id, t);
  }

  /** @internal */
  unregister(t: MemoryPeerTransport): void {
    if (this.nodes.get(t.id) === t) this.nodes.delete(t.id);
  }

  /** @internal Returns the receiving transport, or null when the frame is lost. */
  route(from: PeerId, to: PeerId): MemoryPeerTransport | null {
    if (this.blocked.has(`${from}\u0000${to}`)) return null;
    if (this.dropRate > 0 && this.random() < this.dropRate) return null;
    return this.nodes.get(to) ?? null;
  }
}

export class MemoryPeerTransport implements PeerTransport {
  readonly id: PeerId;
  private readonly network: MemoryNetwork;
  private readonly maxQueuedFrames: number;
  private readonly peers = new Set<PeerId>();
  private handler: ((from: PeerId, frame: unknown) => void) | null = null;
  private started = false;
  private closed = false;
  /** Frames in flight from this node, per destination (bounded like the TCP queue). */
  private readonly inflight = new Map<PeerId, number>();

  constructor(network: MemoryNetwork, id: PeerId, maxQueuedFrames: number) {
    this.network = network;
    this.id = id;
    this.maxQueuedFrames = maxQueuedFrames;
  }

  async start(): Promise<void> {
    if (this.closed || this.started) return;
    this.started = true;
    this.network.register(this);
  }

  send(to: PeerId, frame: unknown): boolean {
    if (this.closed || !this.peers.has(to)) return false;
    const n = this.inflight.get(to) ?? 0;
    if (n >= this.maxQueuedFrames) return false;
    let payload: Uint8Array;
    try {
      payload = encodePayload(frame);
    } catch {
      return false;
    }
    if (payload.byteLength > defaultMaxFrameBytes) return false;
    const copy = new Uint8Array(payload); // msgpackr may reuse its buffer on the next pack
    this.inflight.set(to, n + 1);
    setImmediate(() => {
      this.inflight.set(to, (this.inflight.get(to) ?? 1) - 1);
      if (this.closed) return;
      const dest = this.network.route(this.id, to);
      if (dest !== null) dest.receive(this.id, decodePayload(copy));
    });
    return true;
  }

  onFrame(handler: (from: PeerId, frame: unknown) => void): void {
    this.handler = handler;
  }

  setPeer(peer: PeerAddress): void {
    if (peer.id !== this.id) this.peers.add(peer.id);
  }

  removePeer(id: PeerId): void {
    this.peers.delete(id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.network.unregister(this);
  }

  /** @internal */
  receive(from: PeerId, frame: unknown): void {
    if (this.closed || this.handler === null) return;
    try {
      this.handler(from, frame);
    } catch {
      // Same contract as TCP: a throwing handler loses that frame, nothing more.
    }
  }
}
