/**
 * Snapshot streaming, sender side: a follower that needs compacted entries gets a fresh image of the state
 * machine, taken on the apply pipeline, streamed in chunks with a bounded window (memory stays bounded).
 * Frames: 'sc' chunk {sid, seq, hdr|data|fin}, 'sa' ack {sid, seq}, 'sx' abort {sid, reason}.
 */
import type { Message, NodeId, SnapshotMetadata } from '../core/types.js';
import type { NodeContext } from './context.js';

export const snapshotChunksInFlight = 4;
export const snapshotChunkAckTimeoutMs = 10_000;

interface OutboundSnapshot {
  sid: number;
  acked: number;
  ackWaiters: Map<number, () => void>;
  aborted: boolean;
}

/** Stream ids per incarnation (2^21: incarnation × this + number stays a safe integer for any 32-bit incarnation). */
export const streamsPerIncarnation = 2 ** 21;

/**
 * The id of stream `n` (below streamsPerIncarnation) of a process: no other process of the node uses it (its
 * incarnation differs). Ids were the number and the clock's low digits before: the monotonic clock starts again near 0
 * with each process, so a restarted sender could reuse an id, and a late chunk of its previous stream would be taken
 * into the new one.
 */
export function snapshotStreamId(incarnation: number, n: number): number {
  return (incarnation >>> 0) * streamsPerIncarnation + n;
}

export class SnapshotSender {
  private readonly streams = new Map<NodeId, OutboundSnapshot>();
  private seq = 0;

  /** `incarnation`: this process's nonce (RaftNode.incarnation), a 32-bit number. */
  constructor(private readonly ctx: NodeContext, private readonly incarnation: number) {}

  private streamId(): number {
    this.seq = (this.seq + 1) % streamsPerIncarnation;
    return snapshotStreamId(this.incarnation, this.seq);
  }

  start(m: Message): void {
    const ctx = this.ctx;
    const to = m.to;
    if (this.streams.has(to)) return; // one stream per follower at a time
    const session: OutboundSnapshot = { sid: this.streamId(), acked: -1, ackWaiters: new Map(), aborted: false };
    this.streams.set(to, session);
    // Take the image on the apply pipeline, between applies, so it is exactly the state at its index.
    void ctx.parts.applier.onChain(() => {
      const image = ctx.sm.snapshot();
      const meta: SnapshotMetadata = { index: image.index, term: ctx.storage.term(image.index), confState: ctx.parts.membership.confStateAt(image.index) };
      return { image, meta };
    }).then(({ image, meta }) => {
      const fin: Message = { ...m, snapshot: { metadata: meta, data: new Uint8Array(0) } };
      ctx.log.info({ to, index: meta.index }, 'streaming snapshot to follower');
      return this.stream(to, session, image.chunks, fin);
    }).then(
      (ok) => {
        this.streams.delete(to);
        ctx.core.reportSnapshot(to, ok);
        ctx.kick();
      },
      (err) => {
        ctx.log.warn({ to, err: String(err) }, 'snapshot stream failed');
        this.streams.delete(to);
        ctx.core.reportSnapshot(to, false);
        ctx.kick();
      },
    );
  }

  private async stream(to: NodeId, s: OutboundSnapshot, chunks: AsyncIterable<Uint8Array>, fin: Message): Promise<boolean> {
    const ctx = this.ctx;
    let seq = 0;
    const peers = ctx.parts.peers.all();
    const waitAck = (waitSeq: number): Promise<boolean> => new Promise<boolean>((resolve) => {
      const t = ctx.clock.setTimeout(() => resolve(false), snapshotChunkAckTimeoutMs);
      s.ackWaiters.set(waitSeq, () => { t.cancel(); resolve(true); });
    });
    const sendChunk = async (frame: Record<string, unknown>): Promise<boolean> => {
      // Bounded window: wait until at most snapshotChunksInFlight chunks are unacknowledged.
      while (seq - s.acked > snapshotChunksInFlight) {
        const ok = await waitAck(s.acked + 1);
        if (!ok || s.aborted || ctx.stopped) return false;
      }
      if (!ctx.transport.send(to, frame)) return false;
      seq++;
      return true;
    };
    if (!(await sendChunk({ k: 'sc', sid: s.sid, seq, hdr: { peers } }))) return false;
    for await (const data of chunks) {
      if (s.aborted || ctx.stopped) return false;
      if (!(await sendChunk({ k: 'sc', sid: s.sid, seq, data }))) return false;
    }
    if (!(await sendChunk({ k: 'sc', sid: s.sid, seq, fin }))) return false;
    // Wait for the final acknowledgement (the follower staged everything and stepped the snapshot).
    const last = seq - 1;
    while (s.acked < last) {
      const ok = await waitAck(s.acked + 1);
      if (!ok || s.aborted) return false;
    }
    ctx.log.info({ to, index: fin.snapshot?.metadata.index, chunks: seq }, 'snapshot streamed to follower');
    return true;
  }

  onAck(from: NodeId, f: Record<string, unknown>): void {
    const s = this.streams.get(from);
    if (s === undefined || f.sid !== s.sid || typeof f.seq !== 'number') return;
    if (f.seq > s.acked) {
      for (let q = s.acked + 1; q <= f.seq; q++) {
        const w = s.ackWaiters.get(q);
        s.ackWaiters.delete(q);
        s.acked = q;
        w?.();
      }
    }
  }

  /** The receiver gave up on stream `sid`. */
  onAbort(from: NodeId, f: Record<string, unknown>): void {
    const s = this.streams.get(from);
    if (s !== undefined && f.sid === s.sid) abort(s);
  }

  abortAll(): void {
    for (const s of this.streams.values()) abort(s);
  }
}

function abort(s: OutboundSnapshot): void {
  s.aborted = true;
  for (const w of s.ackWaiters.values()) w();
  s.ackWaiters.clear();
}
