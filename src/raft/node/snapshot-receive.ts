/**
 * Snapshot streaming, receiver side: chunks are staged (SnapshotStore: files in production) as they arrive, the
 * final chunk's snapshot message is stepped into the core, and the staged image is installed only once the core
 * accepts it (a Ready with a snapshot). A stream whose chunks stop arriving is abandoned after
 * snapshotReceiveIdleMs.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { PeerAddress } from '../../transport/types.js';
import type { Message, NodeId, SnapshotMetadata } from '../core/types.js';
import { validateMessage } from '../core/validate.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';
import { parsePeers } from './peer-book.js';
import type { StagedSnapshot as StagedImage } from './snapshot-store.js';

/** An inbound snapshot whose chunks stop arriving is abandoned after this long. */
export const snapshotReceiveIdleMs = 30_000;
/** Largest snapshot image a node stages from one stream; bounds the disk one stream can fill. */
export const maxInboundSnapshotBytes = 64 * 1024 * 1024 * 1024;
/**
 * Received snapshot bytes not yet written to disk. A sender keeping its window of snapshotChunksInFlight chunks
 * stays far below (chunks are acknowledged once written); past this the stream is aborted, not buffered.
 */
export const maxInboundSnapshotBufferedBytes = 128 * 1024 * 1024;

interface InboundSnapshot {
  sid: number;
  /** The authenticated id of the connection that started the stream: the only one that may continue it. */
  from: NodeId;
  nextSeq: number;
  out: StagedImage;
  idleTimer: Timer;
  /** Bytes staged so far (length prefixes included). */
  bytes: number;
  peers: PeerAddress[];
}

interface StagedSnapshot {
  index: number;
  image: StagedImage;
  peers: PeerAddress[];
}

/*
 * Every error path here ends in abortInbound() or a dropped frame, never in a throw past onFrame or an unhandled
 * staging error (issue 11: destroying the staging stream with writes pending used to raise an uncaught
 * ERR_STREAM_DESTROYED and end the process). Rules:
 * - only the stream's sender (the authenticated connection id) may continue, finish or abort it;
 * - seq 0 starts a stream (a repeated start of the same stream is ignored; any other start supersedes it);
 * - a duplicate chunk is ignored, a gap aborts; oversize totals and a disk that falls behind abort;
 * - a chunk is acknowledged only once it is stored, so a well-behaved sender (bounded window) is slowed to the
 *   disk's pace instead of buffering in memory;
 * - the final message must be a 'snap' from the sender to this node.
 */
export class SnapshotReceiver {
  private inSnapshot: InboundSnapshot | null = null;
  private staged: StagedSnapshot | null = null;

  constructor(private readonly ctx: NodeContext) {}

  onSnapshotChunk(from: NodeId, f: Record<string, unknown>): void {
    const ctx = this.ctx;
    const sid = f.sid;
    const seq = f.seq;
    if (typeof sid !== 'number' || !Number.isSafeInteger(seq)) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'snapshot chunk without sid/seq');
    const n = seq as number;
    const data = f.data;
    if (data !== undefined && !(data instanceof Uint8Array)) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'snapshot chunk data is not bytes');
    let inb = this.inSnapshot;
    if (n === 0) {
      if (inb !== null && inb.from === from && inb.sid === sid) return; // the same start again: already open
      if (inb !== null) this.abortInbound('superseded by a new snapshot stream');
      inb = this.openInbound(from, sid, (f.hdr as { peers?: unknown } | undefined)?.peers);
    }
    if (inb === null || inb.sid !== sid || inb.from !== from) {
      ctx.transport.send(from, { k: 'sx', sid, reason: 'no such snapshot stream' });
      return;
    }
    if (n < inb.nextSeq) return; // duplicate: already staged (and acknowledged)
    const refuse = (reason: string): void => {
      this.abortInbound(reason);
      ctx.transport.send(from, { k: 'sx', sid, reason });
    };
    if (n !== inb.nextSeq) return refuse(`snapshot chunk ${n} out of order (expected ${inb.nextSeq})`);
    inb.idleTimer.refresh();
    inb.nextSeq++;
    let fin: Message | null = null;
    if (f.fin !== undefined) {
      try {
        fin = validateMessage(f.fin);
      } catch (err) {
        return refuse(`bad final message: ${(err as Error).message}`);
      }
      // The final message is stepped into the core: it must come from the connection that streamed the image.
      if (fin.type !== 'snap' || fin.from !== from || fin.to !== ctx.id || fin.snapshot === undefined) {
        return refuse(`final message is not a snapshot from ${from} to ${ctx.id}`);
      }
    }
    if (data instanceof Uint8Array) {
      inb.bytes += 4 + data.byteLength;
      if (inb.bytes > maxInboundSnapshotBytes) return refuse(`snapshot larger than maxInboundSnapshotBytes ${maxInboundSnapshotBytes}`);
      if (inb.out.pendingBytes + data.byteLength > maxInboundSnapshotBufferedBytes) {
        return refuse(`staging disk behind by over maxInboundSnapshotBufferedBytes ${maxInboundSnapshotBufferedBytes}`);
      }
      const cur = inb;
      const isFin = fin !== null;
      inb.out.write(data, (err) => {
        if (err === null && !isFin && this.inSnapshot === cur && !ctx.stopped) ctx.transport.send(from, { k: 'sa', sid, seq: n });
      });
    } else if (fin === null) {
      ctx.transport.send(from, { k: 'sa', sid, seq: n });
    }
    if (fin !== null) this.finishInbound(inb, fin, n);
  }

  private openInbound(from: NodeId, sid: number, peers: unknown): InboundSnapshot {
    const ctx = this.ctx;
    let inb: InboundSnapshot | null = null;
    const out = ctx.fx.snapshotStore.create((err) => {
      if (inb === null || this.inSnapshot !== inb) return; // abandoned or finishing: finishInbound sees the error
      ctx.log.error({ from, sid, err: err.message }, 'cannot stage inbound snapshot');
      this.abortInbound(`staging write failed: ${err.message}`);
      ctx.transport.send(from, { k: 'sx', sid, reason: 'receiver cannot stage the snapshot' });
    });
    inb = {
      sid, from, nextSeq: 0, out, bytes: 0, peers: parsePeers(peers),
      idleTimer: ctx.clock.setTimeout(() => this.abortInbound('snapshot stream idle'), snapshotReceiveIdleMs),
    };
    this.inSnapshot = inb;
    return inb;
  }

  private finishInbound(inb: InboundSnapshot, fin: Message, seq: number): void {
    const ctx = this.ctx;
    this.inSnapshot = null;
    inb.idleTimer.cancel();
    inb.out.end((err) => {
      if (ctx.stopped || err !== null) {
        if (err !== null) ctx.log.warn({ from: inb.from, sid: inb.sid, err: err.message }, 'inbound snapshot abandoned: staging failed');
        inb.out.remove();
        return;
      }
      if (this.staged !== null && this.staged.image !== inb.out) this.staged.image.remove();
      this.staged = { index: fin.snapshot!.metadata.index, image: inb.out, peers: inb.peers };
      ctx.core.step(fin);
      ctx.transport.send(inb.from, { k: 'sa', sid: inb.sid, seq });
      ctx.kick();
    });
  }

  /** The sender aborted stream `sid`. */
  onAbort(from: NodeId, f: Record<string, unknown>): void {
    if (this.inSnapshot !== null && this.inSnapshot.from === from && f.sid === this.inSnapshot.sid) this.abortInbound('sender aborted');
  }

  abortInbound(reason: string): void {
    const inb = this.inSnapshot;
    if (inb === null) return;
    this.inSnapshot = null;
    inb.idleTimer.cancel();
    inb.out.remove();
    this.ctx.log.warn({ from: inb.from, sid: inb.sid, reason }, 'inbound snapshot abandoned');
  }

  /** Installs the snapshot the core accepted: the staged image (or the inline data of a local one). */
  async install(meta: SnapshotMetadata, inline: Uint8Array): Promise<void> {
    const ctx = this.ctx;
    const { applier, membership, peers } = ctx.parts;
    await applier.idle();
    const staged = this.staged;
    if (staged !== null && staged.index === meta.index) {
      await ctx.sm.restore(meta.index, staged.image.read());
      peers.merge(staged.peers);
      staged.image.remove();
      this.staged = null;
    } else if (inline.byteLength > 0) {
      await ctx.sm.restore(meta.index, (async function* () { yield inline; })());
    } else {
      throw new MooringError(ErrorCode.INTERNAL, `the core accepted snapshot ${meta.index} but no image was staged`);
    }
    await ctx.sm.flush();
    await ctx.storage.applySnapshot(meta);
    membership.resetTo(meta.index, meta.confState);
    peers.connect([...meta.confState.voters, ...meta.confState.learners], false);
    applier.resetTo(meta.index);
    ctx.log.info({ index: meta.index, term: meta.term }, 'installed snapshot from leader');
    ctx.emit('snapshot', meta.index, 'installed');
  }
}
