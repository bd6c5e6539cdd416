/**
 * Simulated clients. Each runs one operation at a time: a write (put / append / cas, proposed through the node it
 * believes leads) or a read (ReadIndex, or a lease read when the cluster is configured for it). An attempt that
 * gets no answer within `opTimeoutTicks` is retried against another node with the same (clientId, seq), so the
 * state machine applies it once; an operation abandoned after `maxAttempts` is recorded with an unknown outcome
 * when it was a write (it may still commit later) and dropped when it was a read (a read changes nothing).
 *
 * `readMode: 'localUnsafe'` is the deliberately broken client of the negative control: it reads a node's local
 * state without ReadIndex, and the checker must catch the stale reads this produces.
 */
import type { NodeId } from '../raft/core/types.js';
import type { Rng } from '../util/rng.js';
import type { KvCommand, KvReply } from './kv-machine.js';
import type { KvInput, KvOutput, Operation } from './linearizability.js';

export type ReadMode = 'readIndex' | 'lease' | 'followerLease' | 'localUnsafe';

export interface ClientOptions {
  clients?: number;
  keys?: number;
  /** 'lease' only changes the Raft configuration (readOnlyOption); the client path is the same ReadIndex call. */
  readMode?: ReadMode;
  /** One attempt's deadline. Default 60 ticks (3 default election timeouts). */
  opTimeoutTicks?: number;
  /** Attempts per operation before giving up. Default 6. */
  maxAttempts?: number;
  /** Idle ticks between operations: uniform in [0, maxThinkTicks]. Default 4. */
  maxThinkTicks?: number;
  /** Fraction of operations that are reads. Default 0.5. */
  readRatio?: number;
}

export type ClientRequest =
  | { client: number; seq: number; kind: 'write'; cmd: KvCommand }
  | { client: number; seq: number; kind: 'read'; key: string; unsafe: boolean };

export type ClientResponse =
  | { client: number; seq: number; ok: true; reply: KvReply; value?: string | null }
  | { client: number; seq: number; ok: false; code: string; leaderHint?: NodeId | null };

interface InFlight {
  seq: number;
  input: KvInput;
  key: string;
  call: number;
  attempts: number;
  deadline: number;
  target: number;
  retryAt: number;
  /** True once any attempt may have reached the log (a write outcome is unknown from then on). */
  mayHaveApplied: boolean;
}

interface ClientState {
  id: number;
  seq: number;
  nextOpAt: number;
  leaderGuess: number;
  op: InFlight | null;
  /** Last value this client saw per key (cas uses it as the expected value). */
  seen: Map<string, string | null>;
}

export interface ClientStats {
  started: number;
  completed: number;
  unknown: number;
  readsAbandoned: number;
  /** Writes given up after only definite refusals: they took no effect and are left out of the history. */
  refused: number;
  retries: number;
}

/** A source of totally ordered instants for call/return times (the simulator's event counter). */
export type EventClock = () => number;

export class ClientPool {
  readonly history: Operation<KvInput, KvOutput>[] = [];
  readonly stats: ClientStats = { started: 0, completed: 0, unknown: 0, readsAbandoned: 0, refused: 0, retries: 0 };
  private readonly clients: ClientState[] = [];
  private readonly keys: string[];
  readonly readMode: ReadMode;
  private readonly opTimeoutTicks: number;
  private readonly maxAttempts: number;
  private readonly maxThinkTicks: number;
  private readonly readRatio: number;
  /** When false, no new operations start (in-flight ones finish or time out). */
  active = true;

  constructor(
    private readonly rng: Rng,
    private readonly nodes: NodeId[],
    private readonly clock: EventClock,
    options: ClientOptions = {},
  ) {
    const n = options.clients ?? 3;
    this.keys = Array.from({ length: options.keys ?? 3 }, (_, i) => `k${i}`);
    this.readMode = options.readMode ?? 'readIndex';
    this.opTimeoutTicks = options.opTimeoutTicks ?? 60;
    this.maxAttempts = options.maxAttempts ?? 6;
    this.maxThinkTicks = options.maxThinkTicks ?? 4;
    this.readRatio = options.readRatio ?? 0.5;
    for (let i = 0; i < n; i++) {
      this.clients.push({ id: i + 1, seq: 0, nextOpAt: rng.nextInt(this.maxThinkTicks + 1), leaderGuess: rng.nextInt(nodes.length), op: null, seen: new Map() });
    }
  }

  /** Starts operations, fires timeouts and retries; returns the requests to deliver. */
  tick(now: number): { to: NodeId; req: ClientRequest }[] {
    const out: { to: NodeId; req: ClientRequest }[] = [];
    for (const c of this.clients) {
      const op = c.op;
      if (op === null) {
        if (this.active && now >= c.nextOpAt) out.push(this.start(c, now));
        continue;
      }
      if (now >= op.deadline) {
        // No answer in time: the attempt may still take effect.
        if (op.input.kind !== 'get') op.mayHaveApplied = true;
        if (op.attempts >= this.maxAttempts) {
          this.abandon(c, now);
          if (this.active) out.push(this.start(c, now));
          continue;
        }
        op.target = (op.target + 1) % this.nodes.length;
        op.retryAt = now;
      }
      if (op.retryAt <= now && op.retryAt >= 0) out.push(this.attempt(c, now));
    }
    return out;
  }

  private start(c: ClientState, now: number): { to: NodeId; req: ClientRequest } {
    const key = this.keys[this.rng.nextInt(this.keys.length)]!;
    const seq = ++c.seq;
    let input: KvInput;
    const r = this.rng.nextFloat();
    if (r < this.readRatio) input = { kind: 'get' };
    else {
      const value = `${c.id}.${seq}`;
      const w = this.rng.nextInt(10);
      if (w < 6) input = { kind: 'put', value };
      else if (w < 8) input = { kind: 'append', value: value + ';' };
      else input = { kind: 'cas', expected: c.seen.get(key) ?? null, value };
    }
    c.op = { seq, input, key, call: this.clock(), attempts: 0, deadline: 0, target: c.leaderGuess, retryAt: now, mayHaveApplied: false };
    this.stats.started++;
    return this.attempt(c, now);
  }

  private attempt(c: ClientState, now: number): { to: NodeId; req: ClientRequest } {
    const op = c.op!;
    if (op.attempts > 0) this.stats.retries++;
    op.attempts++;
    op.deadline = now + this.opTimeoutTicks;
    op.retryAt = -1;
    // The broken client of the negative control reads wherever it likes (any replica's local state); so does the
    // follower-lease client (any replica, served under its lease or through a ReadIndex round).
    const anyNode = op.input.kind === 'get' && (this.readMode === 'localUnsafe' || this.readMode === 'followerLease');
    const to = anyNode ? this.nodes[this.rng.nextInt(this.nodes.length)]! : this.nodes[op.target]!;
    const i = op.input;
    let req: ClientRequest;
    if (i.kind === 'get') req = { client: c.id, seq: op.seq, kind: 'read', key: op.key, unsafe: this.readMode === 'localUnsafe' };
    else {
      const cmd: KvCommand =
        i.kind === 'cas'
          ? { t: 'cas', c: c.id, s: op.seq, k: op.key, e: i.expected, v: i.value }
          : { t: i.kind, c: c.id, s: op.seq, k: op.key, v: i.value };
      req = { client: c.id, seq: op.seq, kind: 'write', cmd };
    }
    return { to, req };
  }

  private abandon(c: ClientState, now: number): void {
    const op = c.op!;
    if (op.input.kind === 'get') this.stats.readsAbandoned++;
    else if (!op.mayHaveApplied) {
      // Every attempt was refused outright (NOT_LEADER, PROPOSAL_DROPPED): it never reached a log.
      this.stats.refused++;
    } else {
      this.stats.unknown++;
      this.history.push({ clientId: c.id, op: op.input.kind, key: op.key, input: op.input, call: op.call });
    }
    c.op = null;
    c.nextOpAt = now + this.rng.nextInt(this.maxThinkTicks + 1);
  }

  onResponse(resp: ClientResponse, now: number): void {
    const c = this.clients[resp.client - 1];
    const op = c?.op;
    if (!c || !op || op.seq !== resp.seq) return; // an answer to an attempt of an operation already finished
    if (!resp.ok) {
      // A definite refusal of this attempt: retry elsewhere, sooner than the timeout.
      const hint = resp.leaderHint ? this.nodes.indexOf(resp.leaderHint) : -1;
      op.target = hint >= 0 && hint !== op.target ? hint : (op.target + 1) % this.nodes.length;
      c.leaderGuess = op.target;
      if (op.attempts >= this.maxAttempts) {
        this.abandon(c, now);
        return;
      }
      // Back off a little: refusals come quickly while no leader is known.
      op.retryAt = now + 1 + 2 * op.attempts;
      op.deadline = Number.MAX_SAFE_INTEGER;
      return;
    }
    const ret = this.clock();
    let output: KvOutput;
    if (op.input.kind === 'get') {
      output = { value: resp.value ?? null };
      c.seen.set(op.key, resp.value ?? null);
    } else output = op.input.kind === 'cas' ? resp.reply : null;
    this.history.push({ clientId: c.id, op: op.input.kind, key: op.key, input: op.input, output, call: op.call, return: ret });
    this.stats.completed++;
    c.leaderGuess = op.target;
    c.op = null;
    c.nextOpAt = now + this.rng.nextInt(this.maxThinkTicks + 1);
  }

  /** Ends the run: operations still running are recorded as unknown (writes) or dropped (reads). */
  finish(now: number): Operation<KvInput, KvOutput>[] {
    for (const c of this.clients) if (c.op) this.abandon(c, now);
    return this.history;
  }

  idle(): boolean {
    return this.clients.every((c) => c.op === null);
  }
}
