/**
 * Follower reads: every master serves linearizable reads, not only the leader.
 *
 * A follower asks the leader for a read index (Raft ReadIndex, forwarded by the core), waits until it has applied
 * that index, then answers from its own state — so a read never returns state older than any write acknowledged
 * before it started.
 *
 * Read leases (the eviction/remove guard) are leader soft state. A follower's read of getReplicaList carries the keys
 * it will lease in its ReadIndex request; the leader grants those leases (LeaseTable.grant, with its own clock) and
 * records them in its lease file when it answers the request, before the answer is sent, and replies with the keys it
 * refused; the follower records them too before it answers (with the leader, a majority of three: LeaseSync). So the
 * leader knows of every leased read before the follower can answer it; a Remove or eviction admitted after that is
 * refused.
 *
 * A Remove admitted before the read may not be applied yet when the read arrives: the leader neither leases nor
 * answers a key such a write covers (PendingWrites, pending-writes.ts) until it settles. On the leader the read waits
 * for it, then answers the state after it (OBJECT_NOT_FOUND after a remove). The grant handler refuses such a key (or
 * one reserved for an eviction in flight) to a follower, which asks again after a short backoff
 * (maxFollowerRefusedWaitMs in all, then NOT_LEADER: the leader waits). Answering "not found" at once would not be
 * linearizable: the remove may still fail (a lost leadership, a dropped proposal). An older follower answers refused
 * keys as "being evicted": no lease, no replicas, still safe.
 *
 * A key the leader granted to this follower a moment ago (coverMs: follower-lease-cover.ts) is not asked for
 * again: the leader granted it one margin longer than a reader is promised, so it covers the follower's next reads.
 */
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../errors.js';
import type { ForwardedReadHandler, RaftNode } from '../raft/node/index.js';
import { errResult, type Result } from '../statemachine/commands.js';
import type { LeaseTable } from '../statemachine/leases.js';
import type { GetReplicaListValue } from '../statemachine/state-core.js';
import type { MasterState } from '../statemachine/master-state.js';
import type { Clock } from '../raft/node/clock.js';
import type { LoggerLike } from '../transport/logger.js';
import type { LeaseSync } from './lease-sync.js';
import type { PendingWrites } from './pending-writes.js';
import { coverMarginMs, type FollowerLeaseCover } from './follower-lease-cover.js';
import { formatLeaderHint } from './rpc-methods.js';
import { CompactReplicaListsBuilder, setRowLeaseTtl, type BinaryReplicaLists, type CompactReplicaLists, type CompactRows } from './replica-lists-wire.js';

const packr = new Packr({ useRecords: false });
/** Largest lease-key payload one follower read sends the leader; a larger read is sent to the leader instead. */
export const maxFollowerReadLeaseBytes = 256 * 1024;
const none: ReadonlySet<string> = new Set();
/** Voters up to which {leader, serving follower} is a majority (see linearizableRead). */
export const maxFollowerLeaseVoters = 3;
/**
 * A follower whose read the leader refused (a write in flight covers the key, or an eviction) asks again after
 * followerRefusedRetryMs, doubling up to followerRefusedRetryMaxMs, for at most maxFollowerRefusedWaitMs in all; then
 * it answers NOT_LEADER and the client reads from the leader, which waits for the write itself.
 */
export const followerRefusedRetryMs = 5;
export const followerRefusedRetryMaxMs = 100;
export const maxFollowerRefusedWaitMs = 1_000;

export function encodeKeys(keys: readonly string[]): Uint8Array {
  return packr.pack(keys) as Uint8Array;
}

/** Keys from a peer's payload; anything that is not a list of strings counts as none. */
export function decodeKeys(payload: Uint8Array | null | undefined): string[] {
  if (payload === null || payload === undefined) return [];
  try {
    const v: unknown = packr.unpack(payload);
    return Array.isArray(v) && v.every((k) => typeof k === 'string') ? (v as string[]) : [];
  } catch {
    return [];
  }
}

/**
 * Leader: grants the leases follower reads ask for; answers each read with the keys it refused: reserved for an
 * eviction in flight, or covered by an admitted write not yet applied (`pending`; the follower asks again). Then
 * `record`s the granted keys (LeaseSync.recordGranted: the leader's lease file, before the answer leaves); if that
 * fails every read of the round gets no reply, so its follower answers NOT_LEADER instead of serving an unrecorded
 * lease (the client reads from the leader, which fails STORAGE_FAILED if its file is still broken).
 */
export function leaseGrantingHandler(leases: LeaseTable, pending: PendingWrites, record: (keys: string[], nowMs: number) => boolean, now: () => number): ForwardedReadHandler {
  // One margin longer than a reader is promised: the follower serves the key again for a while without asking
  // (follower-lease-cover.ts).
  const forMs = leases.leaseTtlMs + coverMarginMs(leases.leaseTtlMs);
  return (_from, payloads) => {
    const t = now();
    const granted: string[] = [];
    const replies = payloads.map((p) => {
      if (p === null) return null;
      const refused: string[] = [];
      for (const key of decodeKeys(p)) {
        if (pending.covers(key) || leases.grant(key, t, forMs) === 0) refused.push(key);
        else granted.push(key);
      }
      return encodeKeys(refused);
    });
    if (granted.length > 0 && !record(granted, t)) return payloads.map(() => null);
    return replies;
  };
}

/**
 * Waits until this master may answer a linearizable read of `leaseKeys` (null: a read that grants no leases).
 * On the leader: its lease or ReadIndex. On a follower: ReadIndex through the leader, which records the leases
 * first. Returns the keys the leader refused to lease (answer them as being evicted).
 */
export async function linearizableRead(raft: RaftNode, leaseKeys: readonly string[] | null): Promise<ReadonlySet<string>> {
  if (raft.isLeader) {
    await raft.read();
    return none;
  }
  const payload = leaseKeys !== null && leaseKeys.length > 0 ? encodeKeys(leaseKeys) : undefined;
  // The leader and the serving follower both record a follower read's leases (the leader does not announce them):
  // a majority only of three voters (LeaseSync's guarantee across a leader change needs a majority), so larger
  // clusters lease on the leader.
  if (payload !== undefined && raft.members().voters.length > maxFollowerLeaseVoters) throw notLeaderFor(raft, 'leased reads go to the leader in clusters of more than three voters');
  if (payload !== undefined && payload.byteLength > maxFollowerReadLeaseBytes) throw notLeaderFor(raft, 'this read is too large to lease through a follower');
  const reply = await raft.read({ allowFollower: true, ...(payload !== undefined ? { payload } : {}) });
  if (raft.isLeader || payload === undefined) return none; // became leader meanwhile: it grants locally
  // No reply: the leader did not record the leases (it runs a version without follower reads): go to the leader.
  if (reply === null || reply === undefined) throw notLeaderFor(raft, 'the leader did not record the read leases');
  return new Set(decodeKeys(reply));
}

/** What `replicaRead` needs: this master's node, state and lease machinery (MasterNode's, or a simulated node's). */
export interface ReplicaReadDeps {
  raft: RaftNode;
  state: MasterState;
  leases: LeaseTable;
  /** The leader's admitted writes not yet applied: their keys are read after them. */
  pending: PendingWrites;
  leaseSync: Pick<LeaseSync, 'announce' | 'recordServed'>;
  /** Settles with the promise or fails NOT_LEADER when this node stops leading meanwhile (LeaderGate). */
  whileLeading<T>(p: Promise<T>): Promise<T>;
  /** The lease table's clock. */
  now(): number;
  /** Timers for a follower's backoff after a refusal (the process's; the simulator's NodeClock). */
  clock: Pick<Clock, 'setTimeout' | 'now'>;
  leaseTtlMs: number;
  /**
   * This follower's covers (follower-lease-cover.ts): keys it may serve without asking the leader to lease them
   * again. Absent: every follower read asks for every key.
   */
  cover?: FollowerLeaseCover;
  /** Where an unexpected failure of a background cover refresh is reported (a bug: see refreshCovers). */
  logger?: LoggerLike;
}

/**
 * getReplicaList / batchGetReplicaList as any master serves them: a linearizable read (the leader's own, or a
 * follower's ReadIndex through the leader, which grants the leases first); a follower keeps the leases it serves
 * (recordServed); the leader grants them itself and answers only once a majority knows them (LeaseSync.announce).
 * `stale`: no read barrier, answered from this node's state (the leader still grants and announces). The RPC surface
 * and the full-node simulator both read through this.
 */
export function replicaRead(d: ReplicaReadDeps, keys: readonly string[], stale = false): Promise<Result<GetReplicaListValue>[]> {
  return readReplicaLists(d, keys, stale, plainForm);
}

/**
 * replicaRead answering in a compact form (replica-lists-wire.ts), its rows built straight from the state: `rows`
 * chooses version 1 (arrays of numbers) or 2 (binary). The rows are numbers until the end either way: a follower
 * rewrites their lease TTL (compactForm).
 */
export async function replicaReadCompact(d: ReplicaReadDeps, keys: readonly string[], stale = false, rows: CompactRows = 'arrays'): Promise<CompactReplicaLists | BinaryReplicaLists> {
  const b = new CompactReplicaListsBuilder();
  const built = await readReplicaLists(d, keys, stale, compactForm(b));
  return rows === 'binary' ? b.doneBinary(built) : b.done(built);
}

/** How a replica read answers each key: a Result, or a compact row. */
interface ReadForm<R> {
  lists(state: MasterState, keys: readonly string[], nowMs: number, leases: LeaseTable | undefined): R[];
  ok(r: R): boolean;
  /** A follower's answer of `r` (its own, fresh): the cluster's lease TTL, or "being evicted" for a refused key. */
  asFollower(r: R, key: string, refused: ReadonlySet<string>, leaseTtlMs: number): R;
}

const plainForm: ReadForm<Result<GetReplicaListValue>> = {
  lists: (state, keys, nowMs, leases) => state.batchGetReplicaList(keys, nowMs, leases),
  ok: (r) => r.ok,
  asFollower: followerReplicaResult,
};

function compactForm(b: CompactReplicaListsBuilder): ReadForm<number[] | Result<never>> {
  return {
    lists: (state, keys, nowMs, leases) => state.batchReplicaListsInto<number[] | Result<never>>(keys, nowMs, leases, b),
    ok: (r) => Array.isArray(r),
    asFollower: (r, key, refused, leaseTtlMs) => {
      if (refused.size > 0 && refused.has(key)) return beingEvicted(key);
      if (Array.isArray(r)) setRowLeaseTtl(r, leaseTtlMs);
      return r;
    },
  };
}

async function readReplicaLists<R>(d: ReplicaReadDeps, keys: readonly string[], stale: boolean, form: ReadForm<R>): Promise<R[]> {
  // The term the read is confirmed in: the leases it gets were recorded by that term's leader (recordServed).
  const readTerm = d.raft.currentTerm;
  // A follower asks the leader to lease only the keys no recent grant covers (follower-lease-cover.ts); the round
  // itself is needed anyway (the data must be linearizable). When the read began, on the cover's clock and the
  // lease table's: a grant asked for now covers reads that begin up to coverMs later.
  const startMono = d.clock.now();
  const startMs = d.now();
  const follower = !stale && !d.raft.isLeader;
  // Covers stand for a majority of three like the grants they come from (linearizableRead): not in larger clusters.
  const cover = follower && d.raft.members().voters.length <= maxFollowerLeaseVoters ? d.cover : undefined;
  const ask = cover !== undefined ? cover.uncovered(keys, startMono, readTerm) : keys;
  if (cover !== undefined) {
    const again = cover.takeRefresh(startMono);
    if (again.length > 0) void refreshCovers(d, cover, again);
  }
  let refused = stale ? none : await d.whileLeading(linearizableRead(d.raft, ask));
  if (refused.size > 0 && !d.raft.isLeader) refused = await askAgain(d, refused);
  // The leader grants below: first every admitted write covering these keys must settle (see the file comment).
  if (d.raft.isLeader) await afterPendingWrites(d, keys);
  // The follower keeps the leases it serves too: with the leader that records them it makes a majority of three, so
  // a new leader's lease collection (LeaseSync) meets one of them (larger clusters read leased keys from the leader:
  // linearizableRead refuses them on followers there). Keys granted now are recorded for every read their cover
  // serves; covered keys were recorded when they were granted (recordServed still checks the term).
  if (!stale && !d.raft.isLeader) {
    const fresh = refused.size > 0 ? ask.filter((k) => !refused.has(k)) : ask;
    if (cover === undefined) d.leaseSync.recordServed(fresh, d.now(), readTerm);
    else {
      // Until the later of: the reads the cover will serve (begun up to coverMs after this one), and this read's own
      // lease counted from the leader's answer, which a read that waited long (a paused follower, a slow round) got
      // well after it began (simulator seed 1700 with production's client: the record ended 214 ms before it).
      const now = d.now();
      d.leaseSync.recordServed(fresh, now, readTerm, Math.max(startMs + d.leaseTtlMs + cover.coverMs, now + d.leaseTtlMs));
      cover.granted(fresh, startMono, readTerm);
    }
  }
  const now = d.now();
  // Leases are granted only by the leader (stale reads on followers grant none).
  const leases = d.raft.isLeader ? d.leases : undefined;
  const rs = form.lists(d.state, keys, now, leases);
  const granted = keys.filter((_, i) => form.ok(rs[i]!));
  // Every key in `granted` was just granted at `now` (the announcement need not read the table again).
  if (leases !== undefined && granted.length > 0) await d.whileLeading(d.leaseSync.announce(granted, now, true));
  if (leases !== undefined || stale) return rs;
  // Every result is fresh (built for this read): completed in place, not copied per key.
  for (let i = 0; i < rs.length; i++) rs[i] = form.asFollower(rs[i]!, keys[i]!, refused, d.leaseTtlMs);
  return rs;
}

/**
 * Follower: leases again, in the background, `keys` (FollowerLeaseCover.takeRefresh: read under a cover now 7/8
 * through): a read of them with no client waiting, recorded as a read's (recordServed) and covering the reads that
 * begin up to coverMs after it began. So a key read often stays covered, and with a follower read lease
 * (raft.followerLeaseTicks) a read of only covered keys costs the leader nothing at all. Best effort: a key it fails to
 * renew is asked for by the next read that needs it.
 */
async function refreshCovers(d: ReplicaReadDeps, cover: FollowerLeaseCover, keys: readonly string[]): Promise<void> {
  try {
    const term = d.raft.currentTerm;
    const startMono = d.clock.now();
    const startMs = d.now();
    const refused = await d.whileLeading(linearizableRead(d.raft, keys));
    if (d.raft.isLeader) return;
    const fresh = refused.size > 0 ? keys.filter((k) => !refused.has(k)) : keys;
    const now = d.now();
    d.leaseSync.recordServed(fresh, now, term, Math.max(startMs + d.leaseTtlMs + cover.coverMs, now + d.leaseTtlMs));
    cover.granted(fresh, startMono, term);
  } catch (err) {
    // NOT_LEADER, a timeout, an unwritable lease file: nothing was promised to anyone; the reads ask for themselves.
    // Anything else is a bug: reported (at most one line per unexpectedRefreshLogIntervalMs), not rethrown from a
    // promise nobody awaits.
    if (!(err instanceof MooringError) && cover.unexpectedRefreshFailure(d.clock.now())) {
      d.logger?.error({ err: err instanceof Error ? err.stack : String(err), failures: cover.unexpectedRefreshFailures }, 'a background lease-cover refresh failed unexpectedly; follower reads ask for their own leases meanwhile');
    }
  } finally {
    cover.refreshDone();
  }
}

/** Leader: waits until no admitted write covers `keys`; NOT_LEADER if this node stops leading meanwhile. */
async function afterPendingWrites(d: ReplicaReadDeps, keys: readonly string[]): Promise<void> {
  if (!keys.some((k) => d.pending.covers(k))) return;
  while (d.raft.isLeader && keys.some((k) => d.pending.covers(k))) await d.whileLeading(d.pending.whenClear(keys));
  if (!d.raft.isLeader) throw notLeaderFor(d.raft, 'stopped leading while the read waited for a write of its key');
}

/**
 * Follower: the leader refused to lease `refused` (a write in flight covers them, or an eviction): ask again with
 * backoff until it grants them all (or this node became leader: it then waits for its own writes). Returns none;
 * NOT_LEADER after maxFollowerRefusedWaitMs (the client then reads from the leader, which waits).
 */
async function askAgain(d: ReplicaReadDeps, refused: ReadonlySet<string>): Promise<ReadonlySet<string>> {
  let left = refused;
  let delay = followerRefusedRetryMs;
  let waited = 0;
  while (left.size > 0 && !d.raft.isLeader) {
    if (waited >= maxFollowerRefusedWaitMs) throw notLeaderFor(d.raft, `a write of ${[...left][0]!} is in flight at the leader`);
    await new Promise<void>((resolve) => d.clock.setTimeout(resolve, delay));
    waited += delay;
    delay = Math.min(delay * 2, followerRefusedRetryMaxMs);
    left = await d.whileLeading(linearizableRead(d.raft, [...left]));
  }
  return none;
}

/**
 * A follower's answer carries the cluster's lease TTL (the leader granted it) and refuses keys being evicted. `r` must
 * be the caller's own (fresh) result: its value's TTL is set in place (a copy per key served was a large share of a
 * follower's allocations per read).
 */
export function followerReplicaResult<T extends { leaseTtlMs: number }>(r: Result<T>, key: string, refused: ReadonlySet<string>, leaseTtlMs: number): Result<T> {
  if (refused.size > 0 && refused.has(key)) return beingEvicted(key);
  if (r.ok) r.value.leaseTtlMs = leaseTtlMs;
  return r;
}

function beingEvicted(key: string): Result<never> {
  return errResult(ErrorCode.OBJECT_NOT_FOUND, `object ${key} is being evicted`);
}

function notLeaderFor(raft: RaftNode, why: string): MooringError {
  const leader = raft.leaderId;
  const addr = leader !== null ? raft.peerAddress(leader) : undefined;
  const hint = leader !== null && addr?.rpcPort !== undefined ? formatLeaderHint(leader, { host: addr.host, port: addr.rpcPort }) : undefined;
  return new MooringError(ErrorCode.NOT_LEADER, `${why}; read from the leader${hint !== undefined ? ` ${hint}` : ''}`, hint !== undefined ? { leaderHint: hint } : undefined);
}
