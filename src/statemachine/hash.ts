/**
 * A deterministic hash over the whole replicated state: applied index, segments (with their allocator
 * figures), objects, clients and exactly-once replies, each in sorted key order. Two replicas that applied the
 * same log, or one that restored the other's snapshot, have equal hashes. O(n log n); for tests and audits.
 */
import { createHash } from 'node:crypto';
import { encodeApplied, encodeClientWithReplies, encodeObject, encodeSegment, packr } from './codec.js';
import type { StateCore } from './state-core.js';

function sortedKeys<T>(m: ReadonlyMap<string, T>): string[] {
  return [...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export function computeStateHash(core: StateCore): string {
  const h = createHash('sha256');
  const field = (tag: string, key: string, value: Uint8Array): void => {
    h.update(tag);
    h.update(key);
    h.update('\0');
    h.update(value);
  };
  h.update(encodeApplied(core.appliedIndex));
  // Only once raised: hashes of version-1 states stay what they were.
  if (core.stateVersion > 1) field('m', 'stateVersion', encodeApplied(core.stateVersion));
  for (const id of sortedKeys(core.segments)) {
    const s = core.segments.get(id)!;
    field('s', id, encodeSegment(s.rec));
    h.update(packr.pack([s.alloc.allocatedBytes, s.alloc.allocationCount, s.alloc.stats().freeExtentCount]));
  }
  for (const key of sortedKeys(core.objects)) field('o', key, encodeObject(core.objects.get(key)!));
  for (const id of sortedKeys(core.clients)) field('c', id, encodeClientWithReplies(core.clients.get(id)!, core.replies.get(id)));
  return h.digest('hex');
}
