/**
 * Master metrics on a private prom-client Registry (never the global one: several masters may share a process).
 *
 * Names (Mooncake equivalents in docs/configuration.md § Metrics):
 *   mooring_raft_term, mooring_raft_role{role} (one-hot: 1 for the current role, 0 for the other three),
 *   mooring_raft_has_leader, mooring_raft_commit_index, mooring_raft_applied_index, mooring_raft_leader_changes_total,
 *   mooring_proposal_duration_seconds (histogram), mooring_rpc_duration_seconds{method} (histogram),
 *   mooring_rpc_requests_total{method}, mooring_rpc_failures_total{method,code} (method: the RPC name, `putStart`),
 *   mooring_allocated_bytes, mooring_total_capacity_bytes, mooring_key_count, mooring_evicted_keys_total,
 *   mooring_active_clients, mooring_segments, mooring_snapshots_total, plus prom-client's process_* / nodejs_*.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Role } from '../raft/core/types.js';
import { isErrorCode } from '../errors.js';

export const RAFT_ROLES: readonly Role[] = ['follower', 'preCandidate', 'candidate', 'leader'];

/** Proposal latency: 0.1 ms (fast group commit) to 1 s (election in the way). Seconds. */
export const PROPOSAL_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
export const RPC_BUCKETS_SECONDS = PROPOSAL_BUCKETS_SECONDS;
/**
 * Distinct `method` label values kept; later ones are counted as 'other'. Method names can come from the
 * network, and an unbounded label set would grow memory without bound.
 */
export const MAX_RPC_METHOD_LABELS = 100;
const METHOD_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

export interface RaftMetricsUpdate {
  term?: number;
  role?: Role;
  commitIndex?: number;
  appliedIndex?: number;
  /** Current leader id, '' or null when unknown. A change to a different known leader counts one leader change. */
  leaderId?: string | null;
  /** Total fast pre-votes this node's Raft core started so far (the counter advances by the difference). */
  fastPreVotes?: number;
  /** Total Raft ticks of this node that ran at least half an election timeout late (the counter advances by the difference). */
  clockStalls?: number;
  /** Total requests this node refused with BUSY (backpressure) so far (the counter advances by the difference). */
  busyRefusals?: number;
  /** Reads this node served as a follower under its follower read lease (RaftNode status followerLease.readsServed). */
  followerLeaseReads?: number;
  /** This node cut a damaged end of its log and waits for a leader to bring it up to date (docs/raft.md). */
  recovering?: boolean;
}

export interface CapacityMetricsUpdate {
  allocatedBytes?: number;
  totalCapacityBytes?: number;
  keyCount?: number;
  activeClients?: number;
  segments?: number;
}

export interface CreateMasterMetricsOptions {
  /** prom-client process_* and nodejs_* metrics. Default true. */
  processMetrics?: boolean;
}

export class MasterMetrics {
  readonly registry: Registry;
  readonly raftTerm: Gauge;
  readonly raftRole: Gauge<'role'>;
  readonly raftHasLeader: Gauge;
  readonly raftRecovering: Gauge;
  readonly commitIndex: Gauge;
  readonly appliedIndex: Gauge;
  readonly leaderChanges: Counter;
  readonly fastPreVotes: Counter;
  readonly clockStalls: Counter;
  readonly busyRefusals: Counter;
  readonly followerLeaseReads: Counter;
  readonly followerReadLeaseKeys: Counter<'kind'>;
  /** What each running total from the node's status had reached at the last setRaft (counters advance by the difference). */
  private readonly totalsSeen = new Map<Counter<string>, Map<string, number>>();
  readonly proposalDuration: Histogram;
  readonly rpcDuration: Histogram<'method'>;
  readonly rpcRequests: Counter<'method'>;
  readonly rpcFailures: Counter<'method' | 'code'>;
  readonly allocatedBytes: Gauge;
  readonly totalCapacityBytes: Gauge;
  readonly keyCount: Gauge;
  readonly evictedKeys: Counter;
  readonly activeClients: Gauge;
  readonly segments: Gauge;
  readonly snapshots: Counter;
  /** Re-replication (repair.ts): objects under-replicated and repairs in flight; repairs ended, by outcome. */
  readonly repairState: Gauge<'kind'>;
  readonly repairs: Counter<'outcome'>;
  /** Network input refused (bad handshake, bad frame, over a connection budget), by port and reason. */
  readonly rejectedFrames: Counter<'port' | 'reason'>;
  private lastLeader: string | null = null;
  private readonly methods = new Set<string>();
  /**
   * A raw method name → its label set ({method}), for names that got a label of their own: computed once, not per
   * request (the pattern test and case folding were ~3% of a leader's CPU serving single gets). Bounded like the
   * labels: at most two spellings per label (`putStart`, `PutStart`).
   */
  private readonly labelSets = new Map<string, { method: string }>();

  constructor(options: CreateMasterMetricsOptions = {}) {
    const r = (this.registry = new Registry());
    const registers = [r];
    this.raftTerm = new Gauge({ name: 'mooring_raft_term', help: 'Current Raft term', registers });
    this.raftRole = new Gauge({
      name: 'mooring_raft_role',
      help: 'Raft role, one-hot: 1 for the current role (follower|preCandidate|candidate|leader), 0 otherwise',
      labelNames: ['role'],
      registers,
    });
    this.raftHasLeader = new Gauge({ name: 'mooring_raft_has_leader', help: '1 when this node knows a leader', registers });
    this.raftRecovering = new Gauge({ name: 'mooring_raft_recovering', help: '1 while this node recovers a damaged end of its log (RECOVERING marker): it does not campaign and votes only for candidates holding what it lost', registers });
    this.commitIndex = new Gauge({ name: 'mooring_raft_commit_index', help: 'Highest log index known committed', registers });
    this.appliedIndex = new Gauge({ name: 'mooring_raft_applied_index', help: 'Highest log index applied to the state machine', registers });
    this.leaderChanges = new Counter({ name: 'mooring_raft_leader_changes_total', help: 'Times this node saw a new leader', registers });
    this.fastPreVotes = new Counter({ name: 'mooring_raft_fast_prevotes_total', help: 'Pre-votes started because the leader\'s connection reset (fast failover), not by an election timeout', registers });
    this.clockStalls = new Counter({ name: 'mooring_raft_clock_stalls_total', help: 'Raft ticks that ran at least half an election timeout late: the process was stalled (GC, CPU starvation, a pause) and its peers may have elected a new leader', registers });
    this.followerReadLeaseKeys = new Counter({ name: 'mooring_follower_read_lease_keys_total', help: 'Keys this master served as a follower: kind=asked needed the leader to lease them in the read\'s ReadIndex round, kind=covered were served under a recent grant of the same key (follower-lease-cover), kind=refreshed were leased again ahead of their next reads (cover refresh)', labelNames: ['kind'], registers });
    this.followerLeaseReads = new Counter({ name: 'mooring_raft_follower_lease_reads_total', help: 'Reads this master served as a follower under its follower read lease (raft.followerLeaseTicks), with no round to the leader', registers });
    this.busyRefusals = new Counter({ name: 'mooring_raft_busy_refusals_total', help: 'Proposals and reads refused with BUSY (backpressure: the leader\'s queue had waited longer than maxProposalWaitMs, or a pending limit was reached); clients retried them after retryAfterMs', registers });
    this.proposalDuration = new Histogram({
      name: 'mooring_proposal_duration_seconds',
      help: 'Time from proposal to applied result',
      buckets: PROPOSAL_BUCKETS_SECONDS,
      registers,
    });
    this.rpcDuration = new Histogram({
      name: 'mooring_rpc_duration_seconds',
      help: 'Client RPC handling time by method',
      labelNames: ['method'],
      buckets: RPC_BUCKETS_SECONDS,
      registers,
    });
    this.rpcRequests = new Counter({
      name: 'mooring_rpc_requests_total',
      help: 'Client RPCs received by method (Mooncake: master_<method>_requests_total)',
      labelNames: ['method'],
      registers,
    });
    this.rpcFailures = new Counter({
      name: 'mooring_rpc_failures_total',
      help: 'Client RPCs answered with an error, by method and error code (Mooncake: master_<method>_failures_total)',
      labelNames: ['method', 'code'],
      registers,
    });
    this.allocatedBytes = new Gauge({ name: 'mooring_allocated_bytes', help: 'Bytes allocated to replicas across all segments', registers });
    this.totalCapacityBytes = new Gauge({ name: 'mooring_total_capacity_bytes', help: 'Total bytes of mounted segments', registers });
    this.keyCount = new Gauge({ name: 'mooring_key_count', help: 'Objects (keys) stored', registers });
    this.evictedKeys = new Counter({ name: 'mooring_evicted_keys_total', help: 'Objects evicted (or demoted) by this replica', registers });
    this.activeClients = new Gauge({ name: 'mooring_active_clients', help: 'Clients with a live session', registers });
    this.segments = new Gauge({ name: 'mooring_segments', help: 'Mounted segments', registers });
    this.snapshots = new Counter({ name: 'mooring_snapshots_total', help: 'Snapshots taken or installed by this node', registers });
    this.repairState = new Gauge({ name: 'mooring_repair_objects', help: 'Leader: objects under-replicated (kind=under_replicated) and repairs in flight (kind=in_flight)', labelNames: ['kind'], registers });
    this.repairs = new Counter({ name: 'mooring_repairs_total', help: 'Leader: repairs ended, by outcome (done, failed)', labelNames: ['outcome'], registers });
    this.rejectedFrames = new Counter({
      name: 'mooring_rejected_frames_total',
      help: 'Connections and frames refused on the peer, rpc and http ports, by reason',
      labelNames: ['port', 'reason'] as const,
      registers,
    });
    for (const role of RAFT_ROLES) this.raftRole.set({ role }, 0);
    if (options.processMetrics !== false) collectDefaultMetrics({ register: r });
  }

  /**
   * Advances `counter` (its `kind` label, if given) to the node's running `total` (a total that went down, after a
   * restart of the node object, is ignored).
   */
  private advance(counter: Counter<string>, total: number | undefined, kind?: string): void {
    if (total === undefined) return;
    let seen = this.totalsSeen.get(counter);
    if (seen === undefined) this.totalsSeen.set(counter, (seen = new Map()));
    const before = seen.get(kind ?? '') ?? 0;
    if (total <= before) return;
    if (kind === undefined) counter.inc(total - before);
    else counter.inc({ kind }, total - before);
    seen.set(kind ?? '', total);
  }

  /** Updates any subset of the Raft gauges; counts a leader change when a different known leader appears. */
  setRaft(u: RaftMetricsUpdate): void {
    if (u.term !== undefined) this.raftTerm.set(u.term);
    if (u.role !== undefined) for (const role of RAFT_ROLES) this.raftRole.set({ role }, role === u.role ? 1 : 0);
    if (u.commitIndex !== undefined) this.commitIndex.set(u.commitIndex);
    if (u.appliedIndex !== undefined) this.appliedIndex.set(u.appliedIndex);
    if (u.recovering !== undefined) this.raftRecovering.set(u.recovering ? 1 : 0);
    this.advance(this.fastPreVotes, u.fastPreVotes);
    this.advance(this.clockStalls, u.clockStalls);
    this.advance(this.busyRefusals, u.busyRefusals);
    this.advance(this.followerLeaseReads, u.followerLeaseReads);
    if (u.leaderId !== undefined) {
      const leader = u.leaderId === '' ? null : u.leaderId;
      this.raftHasLeader.set(leader === null ? 0 : 1);
      if (leader !== null && leader !== this.lastLeader) this.leaderChanges.inc();
      if (leader !== null) this.lastLeader = leader;
    }
  }

  /** Running totals of the follower lease cover (FollowerLeaseCover.coveredKeys / askedKeys). */
  setFollowerReadLeases(covered: number, asked: number, refreshed: number): void {
    this.advance(this.followerReadLeaseKeys, covered, 'covered');
    this.advance(this.followerReadLeaseKeys, asked, 'asked');
    this.advance(this.followerReadLeaseKeys, refreshed, 'refreshed');
  }

  setCapacity(u: CapacityMetricsUpdate): void {
    if (u.allocatedBytes !== undefined) this.allocatedBytes.set(u.allocatedBytes);
    if (u.totalCapacityBytes !== undefined) this.totalCapacityBytes.set(u.totalCapacityBytes);
    if (u.keyCount !== undefined) this.keyCount.set(u.keyCount);
    if (u.activeClients !== undefined) this.activeClients.set(u.activeClients);
    if (u.segments !== undefined) this.segments.set(u.segments);
  }

  observeProposal(seconds: number): void {
    if (Number.isFinite(seconds) && seconds >= 0) this.proposalDuration.observe(seconds);
  }

  /** Counts one RPC; a `code` other than 'OK' also counts a failure under that code. */
  countRpc(method: string, code?: string): void {
    this.count(this.labelSet(method), code);
  }

  /** countRpc plus the latency histogram, for the RPC server's one call per request. */
  observeRpc(method: string, seconds: number, code?: string): void {
    const labels = this.labelSet(method);
    this.count(labels, code);
    if (Number.isFinite(seconds) && seconds >= 0) this.rpcDuration.observe(labels, seconds);
  }

  private count(labels: { method: string }, code: string | undefined): void {
    this.rpcRequests.inc(labels);
    if (code !== undefined && code !== 'OK') this.rpcFailures.inc({ method: labels.method, code: isErrorCode(code) ? code : 'OTHER' });
  }

  /** The label set of a raw method name (see labelSets); prom-client only reads it. */
  private labelSet(raw: string): { method: string } {
    const known = this.labelSets.get(raw);
    if (known !== undefined) return known;
    const method = this.methodLabel(raw);
    const labels = { method };
    if (method !== 'other' && this.labelSets.size < 2 * MAX_RPC_METHOD_LABELS) this.labelSets.set(raw, labels);
    return labels;
  }

  countEvictions(keys: number): void {
    if (Number.isFinite(keys) && keys > 0) this.evictedKeys.inc(keys);
  }

  setRepair(u: { underReplicated: number; inFlight: number; done: number; failed: number }): void {
    this.repairState.set({ kind: 'under_replicated' }, u.underReplicated);
    this.repairState.set({ kind: 'in_flight' }, u.inFlight);
    if (u.done > 0) this.repairs.inc({ outcome: 'done' }, u.done);
    if (u.failed > 0) this.repairs.inc({ outcome: 'failed' }, u.failed);
  }

  countSnapshot(): void {
    this.snapshots.inc();
  }

  /** Prometheus text exposition of everything in the registry. */
  async expose(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** The RPC method name as the wire spells it (`putStart`): a Mooncake-style `PutStart` is folded onto it. */
  private methodLabel(raw: string): string {
    if (typeof raw !== 'string' || !METHOD_PATTERN.test(raw)) return 'other';
    const method = raw[0]!.toLowerCase() + raw.slice(1);
    if (this.methods.has(method)) return method;
    if (this.methods.size >= MAX_RPC_METHOD_LABELS) return 'other';
    this.methods.add(method);
    return method;
  }
}

export function createMasterMetrics(options: CreateMasterMetricsOptions = {}): MasterMetrics {
  return new MasterMetrics(options);
}
