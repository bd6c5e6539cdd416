import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MAX_RPC_METHOD_LABELS, createMasterMetrics } from '../../src/master/metrics.js';

/** The value of one sample line (`name{labels} value`) in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('createMasterMetrics', () => {
  it('exposes every named metric with the values the helpers set', async () => {
    const m = createMasterMetrics();
    m.setRaft({ term: 7, role: 'leader', commitIndex: 120, appliedIndex: 118, leaderId: 'm1' });
    m.setCapacity({ allocatedBytes: 1024, totalCapacityBytes: 4096, keyCount: 3, activeClients: 2, segments: 5 });
    m.observeProposal(0.0004);
    m.observeProposal(0.2);
    m.observeRpc('putStart', 0.001);
    m.observeRpc('PutStart', 0.002, 'NO_SPACE'); // a Mooncake-style name folds onto the wire method name
    m.countRpc('getReplicaList', 'OK');
    m.countRpc('GetReplicaList', 'OBJECT_NOT_FOUND');
    m.countEvictions(4);
    m.countSnapshot();
    const { body, contentType } = await m.expose();
    expect(contentType).toContain('text/plain');
    expect(sample(body, 'mooring_raft_term')).toBe(7);
    expect(sample(body, 'mooring_raft_role{role="leader"}')).toBe(1);
    expect(sample(body, 'mooring_raft_role{role="follower"}')).toBe(0);
    expect(sample(body, 'mooring_raft_role{role="candidate"}')).toBe(0);
    expect(sample(body, 'mooring_raft_role{role="preCandidate"}')).toBe(0);
    expect(sample(body, 'mooring_raft_has_leader')).toBe(1);
    expect(sample(body, 'mooring_raft_commit_index')).toBe(120);
    expect(sample(body, 'mooring_raft_applied_index')).toBe(118);
    expect(sample(body, 'mooring_raft_leader_changes_total')).toBe(1);
    expect(sample(body, 'mooring_proposal_duration_seconds_count')).toBe(2);
    expect(sample(body, 'mooring_proposal_duration_seconds_bucket{le="0.0005"}')).toBe(1);
    expect(sample(body, 'mooring_proposal_duration_seconds_bucket{le="0.0001"}')).toBe(0);
    expect(sample(body, 'mooring_proposal_duration_seconds_bucket{le="1"}')).toBe(2);
    expect(sample(body, 'mooring_rpc_duration_seconds_count{method="putStart"}')).toBe(2);
    expect(sample(body, 'mooring_rpc_requests_total{method="putStart"}')).toBe(2);
    expect(sample(body, 'mooring_rpc_failures_total{method="putStart",code="NO_SPACE"}')).toBe(1);
    expect(sample(body, 'mooring_rpc_requests_total{method="getReplicaList"}')).toBe(2);
    expect(sample(body, 'mooring_rpc_failures_total{method="getReplicaList",code="OBJECT_NOT_FOUND"}')).toBe(1);
    expect(body).not.toContain('code="OK"');
    expect(body).not.toMatch(/method="[A-Z]/); // one label style: the RPC method as the wire names it
    expect(sample(body, 'mooring_allocated_bytes')).toBe(1024);
    expect(sample(body, 'mooring_total_capacity_bytes')).toBe(4096);
    expect(sample(body, 'mooring_key_count')).toBe(3);
    expect(sample(body, 'mooring_active_clients')).toBe(2);
    expect(sample(body, 'mooring_segments')).toBe(5);
    expect(sample(body, 'mooring_evicted_keys_total')).toBe(4);
    expect(sample(body, 'mooring_snapshots_total')).toBe(1);
    // Default process metrics are on by default.
    expect(body).toContain('process_cpu_user_seconds_total');
    expect(body).toContain('nodejs_heap_size_used_bytes');
  });

  it('counts a leader change only when a different known leader appears', async () => {
    const m = createMasterMetrics({ processMetrics: false });
    m.setRaft({ leaderId: 'm1' });
    m.setRaft({ leaderId: 'm1' });
    m.setRaft({ leaderId: null }); // election in progress
    m.setRaft({ leaderId: 'm1' }); // same leader came back: not a change
    m.setRaft({ leaderId: 'm2' });
    m.setRaft({ leaderId: '' });
    const body = (await m.expose()).body;
    expect(sample(body, 'mooring_raft_leader_changes_total')).toBe(2);
    expect(sample(body, 'mooring_raft_has_leader')).toBe(0);
    expect(body).not.toContain('process_cpu');
  });

  it('the recovering gauge follows the node (1 while it recovers a cut log)', async () => {
    const m = createMasterMetrics({ processMetrics: false });
    m.setRaft({ recovering: true });
    expect(sample((await m.expose()).body, 'mooring_raft_recovering')).toBe(1);
    m.setRaft({ term: 3 }); // a report without it leaves it as it was
    expect(sample((await m.expose()).body, 'mooring_raft_recovering')).toBe(1);
    m.setRaft({ recovering: false });
    expect(sample((await m.expose()).body, 'mooring_raft_recovering')).toBe(0);
  });

  it('fast pre-votes, clock stalls and BUSY refusals advance by what the node reports (totals, never backwards)', async () => {
    const m = createMasterMetrics({ processMetrics: false });
    m.setRaft({ fastPreVotes: 2, clockStalls: 1, busyRefusals: 5 });
    m.setRaft({ fastPreVotes: 2, clockStalls: 4, busyRefusals: 7 });
    m.setRaft({ clockStalls: 3, busyRefusals: 6 }); // a stale report does not decrease the counter
    const body = (await m.expose()).body;
    expect(sample(body, 'mooring_raft_fast_prevotes_total')).toBe(2);
    expect(sample(body, 'mooring_raft_clock_stalls_total')).toBe(4);
    expect(sample(body, 'mooring_raft_busy_refusals_total')).toBe(7);
  });

  it('each instance has its own registry, separate from the global one', async () => {
    const a = createMasterMetrics({ processMetrics: false });
    const b = createMasterMetrics({ processMetrics: false });
    a.setRaft({ term: 3 });
    b.setRaft({ term: 9 });
    expect(sample((await a.expose()).body, 'mooring_raft_term')).toBe(3);
    expect(sample((await b.expose()).body, 'mooring_raft_term')).toBe(9);
    expect(await globalRegistry.metrics()).not.toContain('mooring_raft_term');
  });

  it('bounds label values from untrusted input: odd method names and unknown codes', async () => {
    const m = createMasterMetrics({ processMetrics: false });
    for (let i = 0; i < MAX_RPC_METHOD_LABELS + 50; i++) m.countRpc(`M${i}`);
    m.countRpc('bad"name\n', 'NOT_A_CODE');
    m.countRpc('Ping', 'made-up');
    m.observeProposal(Number.NaN);
    m.observeProposal(-1);
    m.countEvictions(-3);
    const body = (await m.expose()).body;
    const methods = new Set(
      body.split('\n').filter((l) => l.startsWith('mooring_rpc_requests_total{')).map((l) => /method="([^"]*)"/.exec(l)![1]),
    );
    expect(methods.size).toBe(MAX_RPC_METHOD_LABELS + 1); // the first MAX, plus 'other'
    expect(sample(body, 'mooring_rpc_requests_total{method="other"}')).toBe(50 + 2);
    expect(sample(body, 'mooring_rpc_failures_total{method="other",code="OTHER"}')).toBe(2);
    expect(sample(body, 'mooring_proposal_duration_seconds_count')).toBe(0);
    expect(sample(body, 'mooring_evicted_keys_total')).toBe(0);
  });
});
