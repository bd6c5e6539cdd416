/** The read-only face of the state the planners use (StateCore and MasterState both provide it). */
import type { ClientRecord } from './clients.js';
import type { ObjectRecord } from './objects.js';
import type { SegmentIndex } from './segment-index.js';
import type { Segment } from './segments.js';
import type { StateStats } from './state-core.js';

export interface StateView {
  readonly objects: ReadonlyMap<string, ObjectRecord>;
  readonly segments: ReadonlyMap<string, Segment>;
  /** Segments in id order. */
  readonly ordered: readonly Segment[];
  readonly clients: ReadonlyMap<string, ClientRecord>;
  /** Keys with a PROCESSING version, upsert or offload. */
  readonly inFlight: ReadonlySet<string>;
  /** Per segment, the objects with a replica there (segment-index.ts). */
  readonly onSegment: Pick<SegmentIndex, 'on'>;
  /** Which command forms the cluster applies (state-version.ts). */
  readonly stateVersion: number;
  stats(): StateStats;
}
