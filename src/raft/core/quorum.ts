/**
 * Quorum arithmetic: the committed index and the vote outcome for a majority config and for a joint config
 * (two majorities, both must agree). An empty majority config agrees with anything (so a non-joint config is
 * a joint one whose outgoing half is empty).
 */
import type { NodeId } from './types.js';

export type VoteResult = 'won' | 'lost' | 'pending';

/** The largest index that a majority of `voters` have acknowledged (ack missing = 0). Infinity if empty. */
export function majorityCommitted(voters: ReadonlySet<NodeId>, acked: (id: NodeId) => number | undefined): number {
  const n = voters.size;
  if (n === 0) return Infinity;
  if (n === 1) {
    for (const id of voters) return acked(id) ?? 0;
  }
  // Insertion sort, descending: Array.prototype.sort allocated a work array on every call (the leader's largest
  // allocation per write in a heap profile; this runs at every acknowledgement), and voter sets are small.
  const xs: number[] = [];
  for (const id of voters) {
    const v = acked(id) ?? 0;
    let i = xs.length;
    xs.push(v);
    while (i > 0 && xs[i - 1]! < v) {
      xs[i] = xs[i - 1]!;
      i--;
    }
    xs[i] = v;
  }
  // With the acks sorted descending, the (n/2+1)-th is held by a majority.
  return xs[Math.floor(n / 2)]!;
}

export function jointCommitted(
  incoming: ReadonlySet<NodeId>,
  outgoing: ReadonlySet<NodeId>,
  acked: (id: NodeId) => number | undefined,
): number {
  return Math.min(majorityCommitted(incoming, acked), majorityCommitted(outgoing, acked));
}

export function majorityVoteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.size === 0) return 'won';
  let yes = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) yes++;
  }
  const q = Math.floor(voters.size / 2) + 1;
  if (yes >= q) return 'won';
  if (yes + missing >= q) return 'pending';
  return 'lost';
}

export function jointVoteResult(
  incoming: ReadonlySet<NodeId>,
  outgoing: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const a = majorityVoteResult(incoming, votes);
  const b = majorityVoteResult(outgoing, votes);
  if (a === b) return a;
  if (a === 'lost' || b === 'lost') return 'lost';
  return 'pending';
}
