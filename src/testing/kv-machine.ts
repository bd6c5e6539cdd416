/**
 * A small deterministic KV state machine applied from committed entries, with per-client sessions so that a
 * write retried after a timeout or failover (same clientId and seq) is applied once and answered with the
 * reply of its first application (the exactly-once scheme of DESIGN.md).
 */
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export type KvCommand =
  | { t: 'put'; c: number; s: number; k: string; v: string }
  | { t: 'append'; c: number; s: number; k: string; v: string }
  | { t: 'cas'; c: number; s: number; k: string; e: string | null; v: string }
  /** A liveness probe from the simulator itself: no effect on the data. */
  | { t: 'probe'; p: number };

/** put/append → null; cas → whether it swapped. */
export type KvReply = { ok: boolean } | null;

export interface ApplyResult {
  clientId: number;
  seq: number;
  reply: KvReply;
  duplicate: boolean;
}

export function encodeCommand(cmd: KvCommand): Uint8Array {
  return encoder.encode(JSON.stringify(cmd));
}

/** Decodes a command; null for an empty (no-op) entry. Throws on bytes this machine never wrote (a bug). */
export function decodeCommand(data: Uint8Array): KvCommand | null {
  if (data.length === 0) return null;
  return JSON.parse(decoder.decode(data)) as KvCommand;
}

export class KvMachine {
  private readonly data = new Map<string, string>();
  /** clientId → last applied seq and its reply. Clients run one write at a time, so one slot per client suffices. */
  private readonly sessions = new Map<number, { seq: number; reply: KvReply }>();
  appliedIndex = 0;
  probes = new Set<number>();

  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  /** Apply one committed normal entry's data at `index` (indices must arrive in order). */
  apply(index: number, bytes: Uint8Array): ApplyResult | null {
    if (index <= this.appliedIndex) throw new Error(`KvMachine: index ${index} applied twice (applied ${this.appliedIndex})`);
    this.appliedIndex = index;
    const cmd = decodeCommand(bytes);
    if (cmd === null) return null;
    if (cmd.t === 'probe') {
      this.probes.add(cmd.p);
      return null;
    }
    const session = this.sessions.get(cmd.c);
    if (session && cmd.s <= session.seq) {
      return { clientId: cmd.c, seq: cmd.s, reply: cmd.s === session.seq ? session.reply : null, duplicate: true };
    }
    let reply: KvReply = null;
    switch (cmd.t) {
      case 'put':
        this.data.set(cmd.k, cmd.v);
        break;
      case 'append':
        this.data.set(cmd.k, (this.data.get(cmd.k) ?? '') + cmd.v);
        break;
      case 'cas': {
        const ok = (this.data.get(cmd.k) ?? null) === cmd.e;
        if (ok) this.data.set(cmd.k, cmd.v);
        reply = { ok };
        break;
      }
    }
    this.sessions.set(cmd.c, { seq: cmd.s, reply });
    return { clientId: cmd.c, seq: cmd.s, reply, duplicate: false };
  }

  /** Records that entries up to `index` were applied without effect on the data (no-ops, conf changes). */
  skipTo(index: number): void {
    if (index <= this.appliedIndex) throw new Error(`KvMachine: index ${index} applied twice (applied ${this.appliedIndex})`);
    this.appliedIndex = index;
  }

  snapshot(): Uint8Array {
    const image = {
      a: this.appliedIndex,
      d: [...this.data.entries()].sort((x, y) => (x[0] < y[0] ? -1 : 1)),
      s: [...this.sessions.entries()].sort((x, y) => x[0] - y[0]),
      p: [...this.probes].sort((x, y) => x - y),
    };
    return encoder.encode(JSON.stringify(image));
  }

  static restore(bytes: Uint8Array): KvMachine {
    const m = new KvMachine();
    if (bytes.length === 0) return m;
    const image = JSON.parse(decoder.decode(bytes)) as {
      a: number;
      d: [string, string][];
      s: [number, { seq: number; reply: KvReply }][];
      p: number[];
    };
    m.appliedIndex = image.a;
    for (const [k, v] of image.d) m.data.set(k, v);
    for (const [c, s] of image.s) m.sessions.set(c, s);
    for (const p of image.p) m.probes.add(p);
    return m;
  }

  /** A canonical text of the data (for comparing replicas). */
  digest(): string {
    return JSON.stringify([...this.data.entries()].sort((x, y) => (x[0] < y[0] ? -1 : 1)));
  }
}
