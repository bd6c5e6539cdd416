/**
 * Snapshot streaming, receiver side: chunks are staged (SnapshotStore: files in production) as they arrive, the
 * final chunk's snapshot message is stepped into the core, and the staged image is installed only once the core
 * accepts it (a Ready with a snapshot). A stream whose chunks stop arriving is abandoned after
 * snapshotReceiveIdleMs.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { PeerAddress } from '../../transport/types.js';
import type { NodeId, SnapshotMetadata } from '../core/types.js';
import { validateMessage } from '../core/validate.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';
import { parsePeers } from './peer-book.js';
import type { StagedSnapshot as StagedImage } from './snapshot-store.js';

/** An inbound snapshot whose chunks stop arriving is abandoned after this long. */
export const snapshotReceiveIdleMs = 30_000;

interface InboundSnapshot {
  sid: number;
  from: NodeId;
  nextSeq: number;
  out: StagedImage;
  idleTimer: Timer;
  peers?: PeerAddress[];
}

interface StagedSnapshot {
  index: number;
  image: StagedImage;
  peers: PeerAddress[];
}

export class SnapshotReceiver {
  private inSnapshot: InboundSnapshot | null = null;
  private staged: StagedSnapshot | null = null;

  constructor(private readonly ctx: NodeContext) {}

  onSnapshotChunk(from: NodeId, f: Record<string, unknown>): void {
    const ctx = this.ctx;
    const sid = f.sid;
    const seq = f.seq;
    if (typeof sid !== 'number' || typeof seq !== 'number') throw new MooringError(ErrorCode.MALFORMED_FRAME, 'snapshot chunk without sid/seq');
    let inb = this.inSnapshot;
    if (seq === 0) {
      if (inb !== null) this.abortInbound('superseded by a new snapshot stream');
      inb = {
        sid, from, nextSeq: 0, out: ctx.fx.snapshotStore.create(sid),
        idleTimer: ctx.clock.setTimeout(() => this.abortInbound('snapshot stream idle'), snapshotReceiveIdleMs),
      };
      this.inSnapshot = inb;
      const hdr = f.hdr as { peers?: unknown } | undefined;
      inb.peers = parsePeers(hdr?.peers);
    }
    if (inb === null || inb.sid !== sid || inb.from !== from) {
      ctx.transport.send(from, { k: 'sx', sid, reason: 'no such snapshot stream' });
      return;
    }
    if (seq !== inb.nextSeq) {
      this.abortInbound(`snapshot chunk ${seq} out of order (expected ${inb.nextSeq})`);
      ctx.transport.send(from, { k: 'sx', sid, reason: 'out of order' });
      return;
    }
    inb.idleTimer.refresh();
    inb.nextSeq++;
    if (f.data instanceof Uint8Array) inb.out.write(f.data);
    if (f.fin !== undefined) {
      const fin = validateMessage(f.fin);
      const current = inb;
      this.inSnapshot = null;
      current.idleTimer.cancel();
      current.out.end(() => {
        if (ctx.stopped) return;
        if (this.staged !== null && this.staged.image !== current.out) this.staged.image.remove();
        const meta = fin.snapshot?.metadata;
        if (meta === undefined) return;
        this.staged = { index: meta.index, image: current.out, peers: current.peers ?? [] };
        ctx.core.step(fin);
        ctx.transport.send(from, { k: 'sa', sid, seq });
        ctx.kick();
      });
      return;
    }
    ctx.transport.send(from, { k: 'sa', sid, seq });
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
