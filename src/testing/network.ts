/**
 * The simulated network between Raft nodes: every message is delivered after a seeded delay in ticks, unless a
 * partition (symmetric or one-way) or the drop rate takes it; it may be duplicated, and a reorder rate adds extra
 * delay so later messages overtake earlier ones. A cut is checked both when a message is sent and when it is due,
 * so a partition also swallows messages already in flight. All randomness comes from the injected generator.
 */
import type { Message, NodeId } from '../raft/core/types.js';
import type { Rng } from '../util/rng.js';

export interface NetworkOptions {
  /** Every message takes between minDelayTicks and maxDelayTicks (inclusive). Defaults 1 and 2. */
  minDelayTicks?: number;
  maxDelayTicks?: number;
  /** Extra delay for a reordered message, up to this many ticks. Default 30 (beyond an election timeout: stale messages from old terms arrive late). */
  maxReorderExtraTicks?: number;
}

export interface LinkRates {
  /** Probability in [0, 1] that a message is lost. */
  drop: number;
  /** Probability that a message is delivered twice (the copy with its own delay). */
  duplicate: number;
  /** Probability that a message gets extra delay. */
  reorder: number;
}

export const noFaultRates: LinkRates = { drop: 0, duplicate: 0, reorder: 0 };

export interface NetworkStats {
  sent: number;
  delivered: number;
  dropped: number;
  cut: number;
  duplicated: number;
  reordered: number;
}

export class SimNetwork {
  readonly minDelayTicks: number;
  readonly maxDelayTicks: number;
  readonly maxReorderExtraTicks: number;
  rates: LinkRates = { ...noFaultRates };
  /** Blocked directed links "from\u0000to". */
  private readonly cuts = new Set<string>();
  /** tick → messages due then, in send order. */
  private readonly queue = new Map<number, Message[]>();
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, cut: 0, duplicated: 0, reordered: 0 };
  /** Called for every message lost to a cut or a drop (the simulator reports failed snapshot sends with it). */
  onLost: ((m: Message) => void) | null = null;

  constructor(
    private readonly rng: Rng,
    options: NetworkOptions = {},
  ) {
    this.minDelayTicks = options.minDelayTicks ?? 1;
    this.maxDelayTicks = options.maxDelayTicks ?? 2;
    this.maxReorderExtraTicks = options.maxReorderExtraTicks ?? 30;
    if (this.minDelayTicks < 1 || this.maxDelayTicks < this.minDelayTicks) {
      throw new RangeError('network delays must satisfy 1 <= minDelayTicks <= maxDelayTicks');
    }
  }

  /** Symmetric partition: nodes in different groups cannot talk. Nodes in no group are isolated from all. */
  partition(groups: NodeId[][], all: NodeId[]): void {
    const groupOf = new Map<NodeId, number>();
    groups.forEach((g, i) => g.forEach((n) => groupOf.set(n, i)));
    for (const a of all) {
      for (const b of all) {
        if (a === b) continue;
        const ga = groupOf.get(a);
        const gb = groupOf.get(b);
        if (ga === undefined || gb === undefined || ga !== gb) this.cuts.add(a + '\u0000' + b);
      }
    }
  }

  /** One-way cut: messages from `from` to `to` are lost; the other direction still works. */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.cuts.add(from + '\u0000' + to);
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cuts.size > 0 && this.cuts.has(from + '\u0000' + to);
  }

  /** Removes every cut and resets the loss/duplication/reorder rates. Messages in flight stay in flight. */
  heal(): void {
    this.cuts.clear();
    this.rates = { ...noFaultRates };
  }

  hasCuts(): boolean {
    return this.cuts.size > 0;
  }

  send(m: Message, now: number): void {
    this.stats.sent++;
    if (this.isCut(m.from, m.to)) {
      this.stats.cut++;
      this.onLost?.(m);
      return;
    }
    if (this.rates.drop > 0 && this.rng.nextFloat() < this.rates.drop) {
      this.stats.dropped++;
      this.onLost?.(m);
      return;
    }
    this.enqueue(m, now);
    if (this.rates.duplicate > 0 && this.rng.nextFloat() < this.rates.duplicate) {
      this.stats.duplicated++;
      this.enqueue(m, now);
    }
  }

  private enqueue(m: Message, now: number): void {
    let delay = this.minDelayTicks + this.rng.nextInt(this.maxDelayTicks - this.minDelayTicks + 1);
    if (this.rates.reorder > 0 && this.rng.nextFloat() < this.rates.reorder) {
      this.stats.reordered++;
      delay += 1 + this.rng.nextInt(this.maxReorderExtraTicks);
    }
    const at = now + delay;
    let q = this.queue.get(at);
    if (!q) this.queue.set(at, (q = []));
    q.push(m);
  }

  /** Messages due at `now` that no cut blocks, in a deterministic order. */
  deliverDue(now: number): Message[] {
    const q = this.queue.get(now);
    if (!q) return [];
    this.queue.delete(now);
    const out: Message[] = [];
    for (const m of q) {
      if (this.isCut(m.from, m.to)) {
        this.stats.cut++;
        this.onLost?.(m);
        continue;
      }
      this.stats.delivered++;
      out.push(m);
    }
    return out;
  }

  /** Number of messages still in flight. */
  inFlight(): number {
    let n = 0;
    for (const q of this.queue.values()) n += q.length;
    return n;
  }
}
