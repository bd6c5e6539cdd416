/**
 * Client workload of the full-node simulator, in the master protocol's shapes: PutStart / PutEnd / Remove
 * (client writes with clientId + seq: a retry after a timeout or a failover returns the first reply, exactly
 * once) and GetReplicaList (a linearizable read: RaftNode.read() on the leader, or on a follower with
 * allowFollower — the follower-read path: the leader's read index, then the follower's own state). Each client has
 * one operation outstanding; it retries on another node after NOT_LEADER, a dropped proposal or a timeout, with
 * the same seq. The history feeds the linearizability check against `objectModel`.
 *
 * With read leases (a LeaseLedger, sim-leases.ts) gets go through the master's lease path (a leader grants and
 * announces; a follower's read is granted by the leader) and removes through the leader's admission (refused with
 * OBJECT_HAS_LEASE while the key is leased); half the removes pick the key most recently read, so the admission
 * check meets live leases. Every get that returns ok is noted in the ledger with the lease it was promised.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import { errResult, type Command, type Result } from '../../statemachine/commands.js';
import type { SeededRng } from '../../util/rng.js';
import type { Model, Operation } from '../linearizability.js';
import { randInt } from './rand.js';
import type { SimScheduler } from './scheduler.js';
import type { SimMasterHost } from './sim-master.js';
import type { LeaseLedger } from './sim-leases.js';
import type { LivenessLedger } from './sim-liveness.js';
import type { PingValue } from '../../statemachine/state-core.js';
import { LeaderPool, callWithRetry, isRetryable } from '../../client/leader-client.js';
import { simClientEnv, simEndpoint } from './sim-client.js';

export type ObjectOp = 'putStart' | 'putEnd' | 'remove' | 'get';
export type ObjectState = 'absent' | 'pending' | 'complete';
/**
 * Output: whether the master answered ok (replica lists and error codes are not modelled); `refused`: refused
 * before it was proposed — a Remove by a read lease (OBJECT_HAS_LEASE), or, through production's client, any write
 * no leader took (a definite NOT_LEADER, BUSY, ...): it had no effect.
 */
export type ObjectOutput = { ok: boolean; refused?: boolean };

/**
 * One object key: PutStart creates it (pending), PutEnd completes it (idempotent), Remove deletes a complete one,
 * GetReplicaList succeeds only on a complete one. A Remove refused by a read lease changes nothing. Pins are not
 * used by the workload.
 */
export const objectModel: Model<ObjectState, ObjectOp, ObjectOutput> = {
  init: () => 'absent',
  step(s, op, out) {
    let ok: boolean;
    let next: ObjectState = s;
    switch (op) {
      case 'putStart': ok = s === 'absent'; if (ok) next = 'pending'; break;
      case 'putEnd': ok = s !== 'absent'; if (ok) next = 'complete'; break;
      case 'remove': ok = s === 'complete'; if (ok) next = 'absent'; break;
      case 'get': ok = s === 'complete'; break;
    }
    if (out === undefined) return [true, next]; // unknown outcome: it took effect
    if (out.refused === true) return [!out.ok, s];
    return [out.ok === ok, next];
  },
  hash: (s) => s,
  readOnly: (op) => op === 'get',
};

export interface WorkloadOptions {
  clients: number;
  keys: number;
  /** Pause between a client's operations (virtual ms), up to. */
  thinkMs: number;
  /** A client gives up on an attempt after this long (virtual ms) and retries elsewhere. */
  attemptTimeoutMs: number;
  /** Attempts per operation before its outcome is recorded as unknown. */
  maxAttempts: number;
  /**
   * Writes (PutStart, PutEnd, Remove and the batch forms) go through production's client (callWithRetry: hedges,
   * hints, parking; sim-client.ts) instead of this workload's own retry loop. Lease runs only. Off by default: the
   * seed-pinned regression tests were found with the workload's own loop and its timings.
   */
  writesThroughClient?: boolean;
  /**
   * Every compact leased read also asks for the next key: two keys in one read, production's batchGetReplicaList
   * path (SimLeaseNode.read). Off by default for the same reason.
   */
  batchReads?: boolean;
  /**
   * Extra clients that only read, each from one node of its own (reader i: node i, while it is up), the two hot keys,
   * every up to `hotReadThinkMs`: follower reads of keys read a moment ago on the same node, which a lease cover
   * serves without a grant and a follower read lease (raft.followerLeaseTicks) without a round. 0 (default): none;
   * the seed-pinned tests were found without them.
   */
  hotReaders?: number;
}

/** A hot reader's pause between reads (virtual ms), up to; one read in 50 is followed by up to hotReadPauseMs more. */
export const hotReadThinkMs = 10;
export const hotReadPauseMs = 1_000;

export const defaultWorkload: WorkloadOptions = { clients: 3, keys: 4, thinkMs: 40, attemptTimeoutMs: 2_000, maxAttempts: 6 };

/** The nonce of a simulated client's session (one process per client id: never reopened with another). */
const sessionNonce = (clientId: string): string => `${clientId}-nonce`;

/** Wall time carried in entries: a fixed epoch plus virtual time, so runs replay exactly. */
export const simEpochMs = 1_700_000_000_000;

export interface AckedWrite {
  clientId: string;
  seq: number;
}

export class Workload {
  readonly history: Operation<ObjectOp, ObjectOutput>[] = [];
  readonly acked: AckedWrite[] = [];
  stopped = false;
  unknown = 0;
  /** Gets answered by a node that was not the leader (follower reads). */
  followerReads = 0;
  /**
   * Client sessions (state version 3, `sessions`): each client opens one before its first write (OpenSession,
   * retried with its nonce like any write) and its writes carry the epoch. Nothing in a run expires a client or reuses
   * its id, so a write refused SESSION_EXPIRED (counted here) means an open session was lost: a violation.
   */
  readonly epochs = new Map<string, number>();
  sessionExpired = 0;
  /** Sessions opened (one per client that wrote, in runs with sessions). */
  get sessionsOpened(): number {
    return this.epochs.size;
  }

  /** Follower reads served under a lease cover (no grant asked of the leader: follower-lease-cover.ts). */
  coveredReads = 0;
  /** Leased gets answered ok in the compact form (replicaReadCompact, as MasterClient.batchGetReplicaList reads). */
  compactReads = 0;
  /** Those of them answered with binary rows (compact version 2, what MasterClient.batchGetReplicaList asks for). */
  binaryRowReads = 0;
  /** Leased gets that read two keys in one call (the compact ones, with the next key). */
  batchReads = 0;
  /** Writes that went through production's client (writesThroughClient). */
  clientWrites = 0;
  /** Removes answered OBJECT_HAS_LEASE. */
  refusedByLease = 0;
  /** Writes through the client whose lease refusal the leader sealed for their seq (SealRefusal). */
  sealedRefusals = 0;
  /** The last answer a client got (for explaining a failed probe). */
  lastResult: Result | null = null;
  private running = 0;
  /** Each client's LeaderPool for the writes that go through production's client (lease runs). */
  private readonly pools = new Map<string, LeaderPool>();

  constructor(
    private readonly sched: SimScheduler,
    private readonly rng: SeededRng,
    private readonly hosts: SimMasterHost[],
    readonly opts: WorkloadOptions,
    private readonly ledger: LeaseLedger | null = null,
    private readonly sessions = false,
    private readonly liveness: LivenessLedger | null = null,
  ) {}

  /** Pings answered OK (client expiry runs, sim-liveness.ts). */
  pingsOk = 0;

  /**
   * From now on `clientId` pings every pingMs as StoreClient does (skipping a tick while its last ping is out),
   * through production's client; OK answers go to the liveness ledger. Nothing without client expiry; idempotent.
   */
  pingAs(clientId: string): void {
    const lv = this.liveness;
    if (lv === null || lv.pinging.has(clientId)) return;
    lv.pinging.add(clientId);
    let busy = false;
    const tick = (): void => {
      this.sched.after(lv.o.pingMs, tick);
      if (busy) return;
      busy = true;
      // MasterClient.ping's leader path (MasterClient.leaderPath): hedged, hinted, parked; production's retry policy.
      callWithRetry<PingValue>(this.pool(clientId), 'ping', { clientId }, { write: false, hedge: true, avoidLeaderArg: true, leaderOnly: true })
        .then((r) => { if (r.status === 'OK') { this.pingsOk++; lv.notePing(clientId); } }, () => {})
        .finally(() => { busy = false; });
    };
    this.sched.after(lv.o.pingMs, tick);
  }

  /** The client's LeaderPool (production's client state: leader belief, skipped endpoints), one per client id. */
  private pool(clientId: string): LeaderPool {
    let pool = this.pools.get(clientId);
    if (pool === undefined) {
      pool = new LeaderPool({ endpoints: this.hosts.map((h) => simEndpoint(h.id)), clusterId: 'sim', nodeId: clientId, env: simClientEnv(this.sched, this.rng.fork(), this.hosts) });
      this.pools.set(clientId, pool);
    }
    return pool;
  }

  /** The client's session epoch, opening it first (sessions only; undefined: writes without an epoch). */
  private async session(clientId: string): Promise<number | undefined> {
    if (!this.sessions) return undefined;
    const known = this.epochs.get(clientId);
    if (known !== undefined) return known;
    for (let attempt = 0; attempt < this.opts.maxAttempts; attempt++) {
      const host = this.pickHost(attempt);
      if (host === null) {
        await this.sleep(50);
        continue;
      }
      const r = await this.attemptCommand(host, { type: 'OpenSession', clientId, nonce: sessionNonce(clientId) });
      if (r === 'retry') {
        await this.sleep(randInt(this.rng, 50) + 10);
        continue;
      }
      // Refused (the state version is not 3 yet: its proposal was lost to a fault): write without an epoch.
      if (!r.ok) return undefined;
      const epoch = (r.value as { epoch: number }).epoch;
      this.epochs.set(clientId, epoch);
      return epoch;
    }
    return undefined;
  }

  get idle(): boolean {
    return this.running === 0;
  }

  start(): void {
    for (let c = 0; c < this.opts.clients; c++) {
      const clientId = `client-${c}`;
      this.pingAs(clientId);
      let seq = 0;
      const loop = (): void => {
        if (this.stopped) return;
        this.running++;
        let key = `k${randInt(this.rng, this.opts.keys)}`;
        const op = (['putStart', 'putEnd', 'remove', 'get', 'putStart', 'putEnd'] as const)[randInt(this.rng, 6)]!;
        const reads = this.ledger?.reads ?? [];
        if (op === 'remove' && reads.length > 0 && randInt(this.rng, 2) === 0) key = reads[reads.length - 1]!.key;
        const s = op === 'get' ? 0 : ++seq;
        // One operation in five is a batch form (BatchPutStart / BatchPutEnd) over two keys.
        const batch = (op === 'putStart' || op === 'putEnd') && randInt(this.rng, 5) === 0;
        const keys = batch ? [key, `k${(Number(key.slice(1)) + 1) % this.opts.keys}`] : [key];
        void (batch ? this.runBatch(clientId, s, op, keys) : this.run(clientId, s, op, key)).finally(() => {
          this.running--;
          this.sched.after(randInt(this.rng, this.opts.thinkMs + 1), loop);
        });
      };
      this.sched.after(randInt(this.rng, this.opts.thinkMs + 1), loop);
    }
    for (let r = 0; r < (this.opts.hotReaders ?? 0); r++) {
      const clientId = `reader-${r}`;
      const loop = (): void => {
        if (this.stopped) return;
        this.running++;
        const key = `k${randInt(this.rng, Math.min(2, this.opts.keys))}`;
        void this.run(clientId, 0, 'get', key, r).finally(() => {
          this.running--;
          // Now and then a pause of up to hotReadPauseMs: leases run out, and removes meet keys just released.
          const pause = randInt(this.rng, 50) === 0 ? randInt(this.rng, hotReadPauseMs + 1) : 0;
          this.sched.after(pause + randInt(this.rng, hotReadThinkMs + 1), loop);
        });
      };
      this.sched.after(randInt(this.rng, hotReadThinkMs + 1), loop);
    }
  }

  /**
   * One operation, with retries; recorded in the history (output absent when the outcome stayed unknown). `home`: a
   * get's first attempt goes to that node (hosts[home]) while it is up (hot readers).
   */
  async run(clientId: string, seq: number, op: ObjectOp, key: string, home?: number): Promise<boolean | undefined> {
    const rec: Operation<ObjectOp, ObjectOutput> = { clientId, op, key, input: op, call: this.sched.now };
    this.history.push(rec);
    if (op !== 'get') this.pingAs(clientId); // a client that writes is registered: it keeps itself alive
    const epoch = op === 'get' ? undefined : await this.session(clientId);
    if (op !== 'get' && this.ledger !== null && this.opts.writesThroughClient === true) {
      const r = await this.throughClient(clientId, op, { ...command(clientId, seq, op, key), ...(epoch !== undefined ? { epoch } : {}) });
      if (r.kind === 'unknown') {
        this.unknown++;
        return undefined;
      }
      rec.output = r.kind === 'ok' ? { ok: true } : r.kind === 'answer' ? { ok: false } : { ok: false, refused: true };
      rec.return = this.sched.now;
      // A sealed refusal (SealRefusal) is in the exactly-once tables like an answer: checked to be there.
      if (r.kind !== 'refused' || r.error.sealed) this.acked.push({ clientId, seq });
      if (r.kind === 'refused' && r.error.sealed) this.sealedRefusals++;
      return r.kind === 'ok';
    }
    for (let attempt = 0; attempt < this.opts.maxAttempts; attempt++) {
      // Reads go to any live node (follower reads; with leases every other attempt to the believed leader: a
      // follower of more than three voters sends leased reads there), writes to the believed leader.
      const homeHost = home !== undefined && attempt === 0 ? this.hosts[home % this.hosts.length]! : null;
      const host = homeHost?.up === true ? homeHost : op === 'get' ? this.pickHost(this.ledger !== null ? attempt + 1 : 1) : this.pickHost(attempt);
      if (host === null) {
        await this.sleep(50);
        continue;
      }
      const lease: LeaseNote = { note: null };
      const r = await this.attempt(host, clientId, seq, op, key, lease, epoch);
      if (r === 'retry') {
        await this.sleep(randInt(this.rng, 50) + 10);
        continue;
      }
      lease.note?.(); // the answer reached the client: its lease counts
      const refused = !r.ok && r.error.code === ErrorCode.OBJECT_HAS_LEASE;
      if (refused) this.refusedByLease++;
      const expired = !r.ok && r.error.code === ErrorCode.SESSION_EXPIRED;
      if (expired) this.sessionExpired++;
      rec.output = refused ? { ok: false, refused } : { ok: r.ok };
      this.lastResult = r;
      rec.return = this.sched.now;
      // A lease refusal was never proposed, a session refusal never remembered: nothing to find in the exactly-once
      // tables.
      if (op !== 'get' && !refused && !expired) this.acked.push({ clientId, seq });
      return r.ok;
    }
    if (op !== 'get') this.unknown++;
    return undefined;
  }

  /**
   * A write through production's client (callWithRetry over this client's LeaderPool, sim-client.ts): hedges,
   * NOT_LEADER hints, parking at followers, and its rules for which errors are definite. Its answer is what an
   * application would be told: success (`ok`), a state machine's answer sealed for the seq (`answer`), a refusal
   * before proposing — a lease, no leader reached — (`refused`: no effect), or an unknown outcome.
   */
  private async throughClient(clientId: string, method: string, cmd: Command): Promise<{ kind: 'ok'; value: unknown } | { kind: 'answer' | 'refused'; error: MooringError } | { kind: 'unknown' }> {
    const pool = this.pool(clientId);
    this.clientWrites++;
    const retry = { deadlineMs: this.opts.attemptTimeoutMs * this.opts.maxAttempts, attemptTimeoutMs: this.opts.attemptTimeoutMs };
    try {
      return { kind: 'ok', value: await callWithRetry(pool, method, cmd as unknown as Record<string, unknown>, { write: true, avoidLeaderArg: true, retry }) };
    } catch (err) {
      const e = err instanceof MooringError ? err : new MooringError(ErrorCode.INTERNAL, String(err));
      if (!e.definite) return { kind: 'unknown' };
      this.lastResult = { ok: false, error: e.toWire() };
      if (e.code === ErrorCode.OBJECT_HAS_LEASE) this.refusedByLease++;
      // Never in a run (nothing expires a client): counted as a violation, recorded as no effect.
      if (e.code === ErrorCode.SESSION_EXPIRED) this.sessionExpired++;
      const refused = e.code === ErrorCode.OBJECT_HAS_LEASE || e.code === ErrorCode.SESSION_EXPIRED || isRetryable(e.code);
      return { kind: refused ? 'refused' : 'answer', error: e };
    }
  }

  /**
   * A batch form: one command, one entry, one answer per key. Each key's part is recorded as its own operation
   * (same call and return): the state machine applies the items independently.
   */
  async runBatch(clientId: string, seq: number, op: 'putStart' | 'putEnd', keys: string[]): Promise<void> {
    const recs = keys.map((key): Operation<ObjectOp, ObjectOutput> => ({ clientId, op, key, input: op, call: this.sched.now }));
    this.history.push(...recs);
    const epoch = await this.session(clientId);
    const ep = epoch !== undefined ? { epoch } : {};
    const cmd: Command = op === 'putStart'
      ? { type: 'BatchPutStart', clientId, seq, ...ep, items: keys.map((key) => ({ key, size: 1024, replicaNum: 1 })) }
      : { type: 'BatchPutEnd', clientId, seq, ...ep, keys };
    if (this.ledger !== null && this.opts.writesThroughClient === true) {
      const r = await this.throughClient(clientId, op === 'putStart' ? 'batchPutStart' : 'batchPutEnd', cmd);
      if (r.kind === 'unknown') {
        this.unknown++;
        return;
      }
      const items = r.kind === 'ok' && Array.isArray(r.value) ? (r.value as Result[]) : null;
      recs.forEach((rec, i) => {
        rec.output = r.kind === 'refused' ? { ok: false, refused: true } : { ok: items?.[i]?.ok === true };
        rec.return = this.sched.now;
      });
      if (r.kind !== 'refused') this.acked.push({ clientId, seq });
      return;
    }
    for (let attempt = 0; attempt < this.opts.maxAttempts; attempt++) {
      const host = this.pickHost(attempt);
      const r = host === null ? 'retry' : await this.attemptCommand(host, cmd);
      if (r === 'retry') {
        await this.sleep(randInt(this.rng, 50) + 10);
        continue;
      }
      const items = r.ok && Array.isArray(r.value) ? (r.value as Result[]) : null;
      recs.forEach((rec, i) => {
        rec.output = { ok: items?.[i]?.ok === true };
        rec.return = this.sched.now;
      });
      if (!r.ok && r.error.code === ErrorCode.SESSION_EXPIRED) this.sessionExpired++;
      else this.acked.push({ clientId, seq });
      return;
    }
    this.unknown++;
  }

  private attemptCommand(host: SimMasterHost, cmd: Command): Promise<Result | 'retry'> {
    const timeout = new Promise<'retry'>((resolve) => this.sched.after(this.opts.attemptTimeoutMs, () => resolve('retry')));
    return Promise.race([host.propose(cmd, simEpochMs + this.sched.now).catch((): 'retry' => 'retry'), timeout]);
  }

  private async attempt(host: SimMasterHost, clientId: string, seq: number, op: ObjectOp, key: string, lease: LeaseNote, epoch?: number): Promise<Result | 'retry'> {
    const timeout = new Promise<'retry'>((resolve) => this.sched.after(this.opts.attemptTimeoutMs, () => resolve('retry')));
    const work = (async (): Promise<Result | 'retry'> => {
      try {
        const leased = host.lease;
        if (leased !== null && this.ledger !== null && op === 'get') {
          const ledger = this.ledger;
          // With batchReads a compact read also asks for the next key (production's batch path: two keys in one read);
          // only `key`'s answer goes into the history, but every lease the client was given counts for the lease check.
          const extra = this.opts.batchReads === true ? `k${(Number(key.slice(1)) + 1) % this.opts.keys}` : undefined;
          const { keys, results, grantedAt, since, coveredKeys: covered, compact, binaryRows } = await leased.read(key, extra);
          if (host.lease !== leased) return 'retry';
          const result = results[0]!;
          if (grantedAt === null) this.followerReads++;
          if (covered[0] === true && result.ok) this.coveredReads++;
          if (compact && result.ok) this.compactReads++;
          if (binaryRows && result.ok) this.binaryRowReads++;
          if (keys.length > 1) this.batchReads++;
          const ok = keys.map((_, i) => i).filter((i) => results[i]!.ok);
          if (ok.length > 0) lease.note = () => { for (const i of ok) ledger.noteRead(keys[i]!, host.id, grantedAt, since, covered[i]); };
          return result;
        }
        if (leased !== null && op === 'remove') {
          return await leased.remove({ type: 'Remove', clientId, seq, key, ...(epoch !== undefined ? { epoch } : {}) }).catch((e: unknown) => {
            if (e instanceof MooringError && e.code === ErrorCode.OBJECT_HAS_LEASE) return errResult(e.code, e.message);
            throw e;
          });
        }
        if (op === 'get') {
          const raft = host.raft;
          if (raft === null) return 'retry';
          await raft.read({ allowFollower: true });
          const state = host.state;
          if (state === null || host.raft !== raft) return 'retry';
          if (!raft.isLeader) this.followerReads++;
          return state.getReplicaList(key, simEpochMs + this.sched.now);
        }
        return await host.propose({ ...command(clientId, seq, op, key), ...(epoch !== undefined ? { epoch } : {}) }, simEpochMs + this.sched.now);
      } catch {
        // NOT_LEADER, QUEUE_FULL, BUSY, PROPOSAL_DROPPED (not applied), TIMEOUT, SHUTTING_DOWN, STORAGE_FAILED (unknown):
        // all are retried with the same seq, which the state machine applies at most once.
        return 'retry';
      }
    })();
    return Promise.race([work, timeout]);
  }

  /** The node that believes it leads, else (and on every other attempt) a random live node. */
  private pickHost(attempt: number): SimMasterHost | null {
    const live = this.hosts.filter((h) => h.up);
    if (live.length === 0) return null;
    // The newest leader: a deposed one may still believe it leads (paused, partitioned).
    const leader = live.filter((h) => h.raft!.isLeader).sort((a, b) => b.raft!.currentTerm - a.raft!.currentTerm)[0];
    if (leader !== undefined && attempt % 2 === 0) return leader;
    return live[randInt(this.rng, live.length)]!;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.sched.after(ms, resolve));
  }
}

/** Set by an attempt whose get was granted a lease: called once its answer reached the client. */
interface LeaseNote {
  note: (() => void) | null;
}

function command(clientId: string, seq: number, op: ObjectOp, key: string): Command {
  switch (op) {
    case 'putStart':
      return { type: 'PutStart', clientId, seq, key, size: 1024, replicaNum: 1 };
    case 'putEnd':
      return { type: 'PutEnd', clientId, seq, key };
    default:
      return { type: 'Remove', clientId, seq, key };
  }
}

/** The storage node's segment every object is placed on (mounted once before the workload starts). */
export function mountCommand(): Command {
  return {
    type: 'MountSegment',
    clientId: 'storage-0',
    seq: 1,
    segment: { id: 'seg-0', name: 'seg-0', base: 0x1000_0000, size: 2 ** 40, protocol: 'tcp', endpoint: '127.0.0.1:1' },
  };
}
