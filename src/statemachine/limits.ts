/**
 * Named limits and defaults of the master state machine. Units are in the names. Values that change what apply
 * computes (alignment, placement, pin TTL) must be identical on every replica: they come from `MasterStateOptions`
 * with these defaults, and the cluster config must agree on them.
 */
export const maxKeyBytes = 4096;
export const maxClientIdBytes = 256;
export const maxSegmentIdBytes = 256;
export const maxEndpointBytes = 512;
export const maxNameBytes = 512;
export const maxZoneBytes = 128;
/** An object may have at most this many replicas (each on a distinct segment). */
export const maxReplicasPerObject = 8;
/** Items in one batch command (BatchPutStart, ...): one log entry, one result per item. */
export const maxBatchSize = 1024;
export const maxSegmentsPerClient = 256;
/** Keys listed in one Evict / ReclaimPuts / RemoveAll skip list. */
export const maxKeysPerCommand = 65_536;
/**
 * Objects one bounded DrainSegments drops at most (state version 2): a drain of a large segment is split over many
 * commands so no apply blocks a master for long (~2.5 µs per object dropped: ~10 ms per command).
 */
export const maxDrainObjectsPerCommand = 4_096;
export const maxClientsPerCommand = 4096;
/** Largest segment (1 PiB) and largest object; offsets stay exact as JS numbers (< 2^53). */
export const maxSegmentBytes = 2 ** 50;
export const maxObjectBytes = 2 ** 44;
/** Highest address a segment may reach (base + size). */
export const maxAddressBytes = 2 ** 52;
/** Exactly-once: replies kept per client (covers that many pipelined writes in flight). */
export const sessionReplyWindow = 16;
// The store tracks written reply slots as a 31-bit mask (StateCore.dirtyReplies).
if (sessionReplyWindow > 31) throw new Error('sessionReplyWindow must be at most 31');

export const defaultAllocAlignmentBytes = 64;
/**
 * DISK segments align extents to this (at least): the NVMe tier opens its file with O_DIRECT, which needs
 * 4096-aligned offsets and lengths. Fixed per tier, so every replica (and every reload) allocates alike.
 */
export const diskAllocAlignmentBytes = 4096;
export const defaultLeaseTtlMs = 10_000;
export const defaultClientTtlMs = 10_000;
export const defaultPutTimeoutMs = 600_000;
export const defaultSoftPinTtlMs = 30 * 60_000;
export const maxSoftPinTtlMs = 24 * 60 * 60_000;
export const defaultHighWatermarkRatio = 0.85;
export const defaultEvictionTargetRatio = 0.75;
/** `random` placement scans at most this many segments from a random start (as Mooncake does). */
export const maxRandomScanSegments = 100;
/** Eviction planning looks at no more than this many objects (oldest first) per plan. */
export const maxEvictionScanObjects = 200_000;
/** Snapshot chunks are at most this big. */
export const maxSnapshotChunkBytes = 1024 * 1024;
