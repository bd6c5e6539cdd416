/**
 * LeaderContact: when this master last heard from each peer, so a follower stops naming a leader it has not heard
 * from within an election timeout (a paused or dead leader) instead of sending clients back to it.
 *
 * It wraps the peer transport handed to RaftNode and notes every frame's arrival before passing it on, so the Raft
 * node itself is unchanged; the master's own peer frames (lease sync) are taken out here too. Time is the given
 * clock's monotonic now() (production: the process's, systemClock; the full-node simulator: the node's NodeClock).
 */
import type { Clock } from '../raft/node/clock.js';
import { systemClock } from '../raft/effects/system-clock.js';
import type { PeerAddress, PeerDownReason, PeerId, PeerTransport } from '../transport/types.js';

export class LeaderContact {
  private readonly lastHeard = new Map<PeerId, number>();
  private listener: ((from: PeerId) => void) | null = null;
  private interceptor: ((from: PeerId, frame: unknown) => boolean) | null = null;

  constructor(private readonly clock: Pick<Clock, 'now'> = systemClock) {}

  /** The transport RaftNode should use: the same one, with arrivals noted. */
  wrap(inner: PeerTransport): PeerTransport {
    return {
      start: () => inner.start(),
      send: (to: PeerId, frame: unknown) => inner.send(to, frame),
      onFrame: (handler: (from: PeerId, frame: unknown) => void) => {
        inner.onFrame((from, frame) => {
          this.lastHeard.set(from, this.clock.now());
          if (this.interceptor?.(from, frame) !== true) handler(from, frame);
          this.listener?.(from);
        });
      },
      setPeer: (peer: PeerAddress) => inner.setPeer(peer),
      removePeer: (id: PeerId) => {
        this.lastHeard.delete(id);
        inner.removePeer(id);
      },
      close: () => inner.close(),
      ...(inner.onPeerDown !== undefined ? {
        onPeerDown: (handler: (peer: PeerId, reason: PeerDownReason) => void) => inner.onPeerDown!((peer, reason) => {
          this.lost(peer);
          handler(peer, reason);
        }),
      } : {}),
    };
  }

  /** Frames the master itself consumes (lease sync) before RaftNode sees them: return true to consume. */
  intercept(fn: (from: PeerId, frame: unknown) => boolean): void {
    this.interceptor = fn;
  }

  /** Called after each frame has been handled (used to wake requests parked until a leader is heard). */
  onHeard(listener: (from: PeerId) => void): void {
    this.listener = listener;
  }

  /** True if `peer` sent a frame within the last `withinMs`. */
  heardWithin(peer: PeerId, withinMs: number): boolean {
    const at = this.lastHeard.get(peer);
    return at !== undefined && this.clock.now() - at <= withinMs;
  }

  /** A connection reset or close: contact is lost now, not one election timeout later. */
  lost(peer: PeerId): void {
    this.lastHeard.delete(peer);
  }
}
