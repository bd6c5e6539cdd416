/**
 * ReadIndex rounds (safe reads): each read request gets its own round, recorded with the commit index at the
 * time of the request; the leader broadcasts a heartbeat carrying the round id, and once a quorum acknowledged
 * that round (or a later one) the read may be served at the recorded index. A round confirmed later in time
 * also confirms every earlier one, so rounds are released in order.
 */
import type { NodeId } from './types.js';

export interface ReadRequest {
  /** Who asked (the leader itself, or a follower that forwarded a readIndex). */
  from: NodeId;
  context: Uint8Array;
}

interface Round {
  id: number;
  index: number;
  request: ReadRequest;
  acks: Map<NodeId, boolean>;
}

/** Round ids travel in a heartbeat's context as 8 bytes big-endian. */
export function encodeRoundId(id: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, Math.floor(id / 0x100000000));
  v.setUint32(4, id >>> 0);
  return b;
}

export function decodeRoundId(ctx: Uint8Array | undefined): number | undefined {
  if (ctx === undefined || ctx.length !== 8) return undefined;
  const v = new DataView(ctx.buffer, ctx.byteOffset, 8);
  return v.getUint32(0) * 0x100000000 + v.getUint32(4);
}

export class ReadOnly {
  private nextId = 1;
  private readonly queue: Round[] = [];
  private readonly byId = new Map<number, Round>();

  /** Records a read at `index`; returns the round id to put in the heartbeat. */
  addRequest(index: number, request: ReadRequest): number {
    const id = this.nextId++;
    const r: Round = { id, index, request, acks: new Map() };
    this.queue.push(r);
    this.byId.set(id, r);
    return id;
  }

  /** Records an ack for round `id`; returns the acks so far (undefined if the round is unknown). */
  recvAck(from: NodeId, id: number): ReadonlyMap<NodeId, boolean> | undefined {
    const r = this.byId.get(id);
    if (r === undefined) return undefined;
    r.acks.set(from, true);
    return r.acks;
  }

  /** Releases every round up to and including `id`, oldest first. */
  advance(id: number): { index: number; request: ReadRequest }[] {
    if (!this.byId.has(id)) return [];
    const out: { index: number; request: ReadRequest }[] = [];
    while (this.queue.length > 0) {
      const r = this.queue.shift()!;
      this.byId.delete(r.id);
      out.push({ index: r.index, request: r.request });
      if (r.id === id) break;
    }
    return out;
  }

  /** The newest pending round (periodic heartbeats carry it, so a lost heartbeat is retried). */
  lastPendingRound(): number | undefined {
    return this.queue.length > 0 ? this.queue[this.queue.length - 1]!.id : undefined;
  }

  pendingCount(): number {
    return this.queue.length;
  }
}
