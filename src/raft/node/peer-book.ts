/**
 * The peer-address book: where each member listens (Raft, RPC and HTTP ports). It starts from the configured
 * peers and the saved book, changes only through committed log entries (or a snapshot's header), and is saved
 * after every change so a restarted node can reach the cluster before it replays its log.
 */
import type { PeerAddress } from '../../transport/types.js';
import type { NodeId } from '../core/types.js';
import type { NodeContext } from './context.js';
import { entryKindPeerAddress, packr, withKind } from './envelope.js';

export class PeerBook {
  private readonly peers = new Map<NodeId, PeerAddress>();

  constructor(private readonly ctx: NodeContext) {}

  all(): PeerAddress[] {
    return [...this.peers.values()];
  }

  get(id: NodeId): PeerAddress | undefined {
    return this.peers.get(id);
  }

  load(configured: PeerAddress[]): void {
    const ctx = this.ctx;
    for (const p of configured) this.peers.set(p.id, peerRecord(p));
    try {
      const saved = ctx.fx.peerBookStore.load();
      if (saved !== undefined) for (const p of parsePeers(saved)) this.peers.set(p.id, p);
    } catch (err) {
      ctx.log.warn({ err: String(err) }, 'peers.json unreadable; using configured peers');
    }
    for (const p of this.peers.values()) if (p.id !== ctx.id) ctx.transport.setPeer(p);
  }

  /** Adds the addresses a snapshot carried and saves the book. */
  merge(list: PeerAddress[]): void {
    for (const p of list) this.peers.set(p.id, p);
    this.save();
  }

  /** Tells the transport where the given members are. */
  connect(ids: NodeId[], includeSelf: boolean): void {
    for (const id of ids) {
      const addr = this.peers.get(id);
      if (addr !== undefined && (includeSelf || id !== this.ctx.id)) this.ctx.transport.setPeer(addr);
    }
  }

  /** Commits `peer`'s address to the log (before it joins, so every member can reach it). */
  async publishAddress(peer: PeerAddress): Promise<void> {
    const ctx = this.ctx;
    ctx.checkRunning();
    ctx.transport.setPeer(peer);
    const data = withKind(entryKindPeerAddress, packr.pack(peerRecord(peer)) as Uint8Array);
    let at: { index: number; term: number };
    try {
      at = ctx.core.propose(data);
    } catch (err) {
      throw ctx.withLeaderAddress(err);
    }
    ctx.kick();
    await ctx.waitFor(() => ctx.parts.applier.applied >= at.index, ctx.settings.proposalTimeoutMs, `address of ${peer.id} not committed in time`);
  }

  applyAddressEntry(body: Uint8Array): void {
    const ctx = this.ctx;
    const parsed = (() => {
      try {
        return parsePeers([packr.unpack(body)]);
      } catch {
        return [];
      }
    })();
    const peer = parsed[0];
    if (peer === undefined) {
      ctx.log.error({}, 'a committed peer-address entry does not decode; ignored');
      return;
    }
    this.peers.set(peer.id, peer);
    if (peer.id !== ctx.id) ctx.transport.setPeer(peer);
    this.save();
  }

  private save(): void {
    this.ctx.fx.peerBookStore.save(this.all());
  }
}

/** Validates an untrusted list of addresses (from disk or a snapshot header); bad records are skipped. */
export function parsePeers(v: unknown): PeerAddress[] {
  if (!Array.isArray(v)) return [];
  const out: PeerAddress[] = [];
  for (const p of v.slice(0, 1000)) {
    if (typeof p !== 'object' || p === null) continue;
    const r = p as Record<string, unknown>;
    if (typeof r.id === 'string' && typeof r.host === 'string' && typeof r.port === 'number') {
      out.push(peerRecord({ id: r.id, host: r.host, port: r.port, rpcPort: r.rpcPort as number, httpPort: r.httpPort as number }));
    }
  }
  return out;
}

export function peerRecord(p: PeerAddress): PeerAddress {
  const rec: PeerAddress = { id: p.id, host: p.host, port: p.port };
  if (typeof p.rpcPort === 'number') rec.rpcPort = p.rpcPort;
  if (typeof p.httpPort === 'number') rec.httpPort = p.httpPort;
  return rec;
}
