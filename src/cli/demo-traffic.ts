/**
 * The demo's storage clients and their traffic: put (putStart + bytes + putEnd), get (getReplicaList + bytes),
 * remove, with bookkeeping of every acknowledged object so the demo can prove none was lost.
 *
 * THE SEAM: bytes go through a `DemoDataPath`. Today it is `metadataOnlyDataPath` (the masters see real
 * metadata traffic; no bytes move). The native engine plugs in here: a DataPath that registers the segments
 * with the engine (`segmentsFor`) and writes/reads each replica (`writeReplicas`/`readReplicas`). Nothing else
 * in the demo changes.
 */
import { ErrorCode, MooringError } from '../errors.js';
import { MasterClient, type RetryPolicy } from '../master/client.js';
import type { ReplicaDescriptor, SegmentSpec } from '../statemachine/commands.js';
import { SeededRng } from '../util/rng.js';

export interface DemoDataPath {
  readonly description: string;
  /** The segments a storage client mounts (a real data path registers memory and serves it at `endpoint`). */
  segmentsFor(clientIndex: number, clientId: string): Promise<SegmentSpec[]>;
  /** Writes `size` bytes of `key` to every replica (between putStart and putEnd). */
  writeReplicas(key: string, size: number, replicas: ReplicaDescriptor[]): Promise<void>;
  /** Reads one replica of `key` back (after getReplicaList). */
  readReplicas(key: string, replicas: ReplicaDescriptor[]): Promise<void>;
  close(): Promise<void>;
}

/** Segments per simulated storage client and their size (metadata only: no memory is reserved). */
export const demoSegmentsPerClient = 2;
export const demoSegmentBytes = 1024 ** 3;

export const metadataOnlyDataPath: DemoDataPath = {
  description: 'metadata only (no bytes move; the native engine plugs in at src/cli/demo-traffic.ts)',
  async segmentsFor(clientIndex, clientId) {
    return Array.from({ length: demoSegmentsPerClient }, (_, j) => ({
      id: `${clientId}-seg${j}`,
      name: `${clientId}-seg${j}`,
      base: j * demoSegmentBytes,
      size: demoSegmentBytes,
      protocol: 'tcp' as const,
      endpoint: `127.0.0.1:${20000 + clientIndex}`,
      zone: `zone-${clientIndex}`,
    }));
  },
  async writeReplicas() {},
  async readReplicas() {},
  async close() {},
};

/** Real-bytes data path: segment size per storage client segment, and the traffic's staging slots. */
export const engineDemoSegmentBytes = 256 * 1024 * 1024;
const engineDemoSlotBytes = 256 * 1024;
const engineDemoSlots = 64;

/**
 * The data path with the native engine (what StoreClient does, in the demo's shape): each storage client gets
 * its own engine whose DRAM segments it mounts (the engine's descriptor travels in the segment name, see
 * src/store/descriptor.ts); the traffic has its own engine and staging slots and moves every object as
 * `bytes ‖ crc32 trailer` (src/store/checksum.ts) to each replica, and verifies bytes and checksum on every read.
 * Null when the addon is not built (the demo then runs metadata only and says so).
 */
export async function engineDataPath(): Promise<DemoDataPath | null> {
  let mod: typeof import('../engine/index.js');
  try {
    mod = await import('../engine/index.js');
  } catch {
    return null;
  }
  const { sealInto, unseal, trailerBytes } = await import('../store/checksum.js');
  const { encodeMemoryName, decodeAddress } = await import('../store/descriptor.js');
  const { StagingPool } = await import('../store/staging.js');
  const engines: Array<InstanceType<typeof mod.Engine>> = [];
  const client = new mod.Engine({ onWarning: () => {} });
  engines.push(client);
  const staging = new StagingPool(client.createSegment({ size: engineDemoSlotBytes * engineDemoSlots, name: 'demo-staging' }), engineDemoSlotBytes, engineDemoSlots);
  const descriptors = new Map<string, ReturnType<InstanceType<typeof mod.Segment>['descriptor']>>();
  const content = (key: string, n: number): Buffer => {
    const b = Buffer.alloc(n);
    let x = 2166136261;
    for (let i = 0; i < key.length; i++) x = Math.imul(x ^ key.charCodeAt(i), 16777619) >>> 0;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  };
  const where = (r: ReplicaDescriptor) => {
    const d = descriptors.get(r.segmentId);
    if (d === undefined) throw new MooringError(ErrorCode.SEGMENT_NOT_FOUND, `segment ${r.segmentId} is not one of the demo's`);
    return d;
  };
  return {
    description: `native engine (real bytes, ${formatMiB(engineDemoSegmentBytes)} segments, crc32-checked on every read)`,
    async segmentsFor(clientIndex, clientId) {
      const e = new mod.Engine({ onWarning: () => {} });
      engines.push(e);
      return Array.from({ length: demoSegmentsPerClient }, (_, j) => {
        const seg = e.createSegment({ size: engineDemoSegmentBytes, name: `${clientId}-seg${j}` });
        const d = seg.descriptor();
        const spec: SegmentSpec = {
          id: `${clientId}-seg${j}`,
          name: encodeMemoryName(d),
          base: j * engineDemoSegmentBytes,
          size: engineDemoSegmentBytes,
          protocol: d.protocol,
          endpoint: d.endpoint,
          zone: `zone-${clientIndex}`,
        };
        const back = decodeAddress(spec);
        if (back?.kind !== 'memory') throw new MooringError(ErrorCode.INTERNAL, 'segment descriptor does not round-trip');
        descriptors.set(spec.id, back.descriptor);
        return spec;
      });
    },
    async writeReplicas(key, size, replicas) {
      if (size > engineDemoSlotBytes || size <= trailerBytes) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `demo objects are ${trailerBytes + 1}..${engineDemoSlotBytes} bytes`);
      await staging.with(async (slot) => {
        sealInto(slot.view(size), key, content(key, size - trailerBytes));
        await client.transferOrThrow(replicas.map((r) => ({ op: 'write' as const, local: { segment: staging.segment, offset: slot.offset }, remote: { segment: where(r), offset: r.offset }, length: size })));
      });
    },
    async readReplicas(key, replicas) {
      await staging.with(async (slot) => {
        let last: unknown = new MooringError(ErrorCode.OBJECT_NOT_FOUND, `${key} has no replica`);
        for (const r of replicas) {
          try {
            await client.transferOrThrow([{ op: 'read', local: { segment: staging.segment, offset: slot.offset }, remote: { segment: where(r), offset: r.offset }, length: r.length }]);
            const payload = unseal(slot.view(r.length), key);
            if (!payload.equals(content(key, payload.length))) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `${key}: bytes differ from what was put`);
            return;
          } catch (e) {
            last = e;
          }
        }
        throw last;
      });
    },
    async close() {
      staging.close();
      for (const e of engines) await e.close();
    },
  };
}

function formatMiB(n: number): string {
  return `${Math.round(n / (1024 * 1024))} MiB`;
}

/** Retries that carry a storage client through a leader failover (seconds, not milliseconds). */
export const demoRetry: RetryPolicy = { maxAttempts: 60, initialBackoffMs: 25, maxBackoffMs: 500 };
export const demoRequestTimeoutMs = 1_000;

export interface StorageClient {
  id: string;
  /** The session that owns the segments and pings. */
  client: MasterClient;
  /**
   * One session per concurrent worker: the masters keep a reply window of 16 seqs per session, so a session
   * whose requests overtake one another by more than that (one retrying through a failover while others
   * move on) would see its straggler refused. One request in flight per session never does.
   */
  workers: MasterClient[];
  segments: SegmentSpec[];
  close(): Promise<void>;
}

/** Creates a storage client: mounts its segments, starts its 1 s ping loop, opens `workers` sessions. */
export async function startStorageClient(index: number, endpoints: string[], clusterId: string, dataPath: DemoDataPath, workers: number): Promise<StorageClient> {
  const id = `storage-${String.fromCharCode(97 + index)}`;
  const mk = (clientId: string): MasterClient => new MasterClient({ endpoints, clusterId, clientId, retry: demoRetry, requestTimeoutMs: demoRequestTimeoutMs });
  const client = mk(id);
  const segments = await dataPath.segmentsFor(index, id);
  for (const s of segments) await client.mountSegment(s);
  client.startPing();
  const sessions = Array.from({ length: workers }, (_, w) => mk(`${id}.w${w}`));
  return {
    id, client, workers: sessions, segments,
    async close() {
      await Promise.all([client, ...sessions].map((c) => c.close().catch(() => {})));
    },
  };
}

const ABSENT = 0, BUSY = 1, PRESENT = 2, UNCERTAIN = 3;

export interface TrafficOptions {
  clients: StorageClient[];
  /** Key space: keys demo/0 … demo/(keys-1). */
  keys: number;
  objectBytes: number;
  replicaNum: number;
  /** Read lease TTL of the masters: a remove is tried only on keys not read for that long. */
  leaseTtlMs: number;
  dataPath: DemoDataPath;
  seed: number;
}

export interface TrafficCounters {
  puts: number;
  gets: number;
  removes: number;
  /** Removes refused because the object was under a read lease (expected, not an error). */
  leaseRefused: number;
  errors: number;
  /** Present keys a read did not find (a lost object). */
  missingOnRead: number;
  errorsByCode: Record<string, number>;
}

export class Traffic {
  readonly counters: TrafficCounters = { puts: 0, gets: 0, removes: 0, leaseRefused: 0, errors: 0, missingOnRead: 0, errorsByCode: {} };
  private readonly state: Uint8Array;
  private readonly readAt: Float64Array;
  private readonly rng: SeededRng;
  private running = false;
  private workers: Promise<void>[] = [];
  lastError: string | null = null;

  constructor(private readonly opts: TrafficOptions) {
    this.state = new Uint8Array(opts.keys);
    this.readAt = new Float64Array(opts.keys);
    this.rng = new SeededRng(opts.seed);
  }

  get ops(): number {
    const c = this.counters;
    return c.puts + c.gets + c.removes + c.leaseRefused + c.errors;
  }

  start(): void {
    this.running = true;
    for (const sc of this.opts.clients) {
      for (const session of sc.workers) this.workers.push(this.worker(session));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
    this.workers = [];
  }

  private fail(err: unknown): void {
    const code = err instanceof MooringError ? err.code : ErrorCode.INTERNAL;
    this.counters.errors++;
    this.counters.errorsByCode[code] = (this.counters.errorsByCode[code] ?? 0) + 1;
    this.lastError = `${code}: ${err instanceof Error ? err.message : String(err)}`;
  }

  private pick(): number {
    for (let tries = 0; tries < 16; tries++) {
      const i = this.rng.nextInt(this.opts.keys);
      if (this.state[i] === ABSENT || this.state[i] === PRESENT) return i;
    }
    return -1;
  }

  private async worker(c: MasterClient): Promise<void> {
    const { dataPath, objectBytes, replicaNum } = this.opts;
    while (this.running) {
      const i = this.pick();
      if (i < 0) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const key = `demo/${i}`;
      const was = this.state[i]!;
      this.state[i] = BUSY;
      if (was === ABSENT) {
        let started = false;
        try {
          const replicas = await c.putStart(key, objectBytes, { replicaNum });
          started = true;
          await dataPath.writeReplicas(key, objectBytes, replicas);
          await c.putEnd(key);
          this.counters.puts++;
          this.state[i] = PRESENT;
        } catch (err) {
          this.fail(err);
          // A putStart refused outright (NO_SPACE, INVALID_ARGUMENT) left nothing behind; anything else may have.
          const definite = !started && err instanceof MooringError && (err.code === ErrorCode.NO_SPACE || err.code === ErrorCode.INVALID_ARGUMENT);
          this.state[i] = definite ? ABSENT : UNCERTAIN;
        }
      } else if (this.rng.nextFloat() < 0.7 || Date.now() - this.readAt[i]! < this.opts.leaseTtlMs) {
        this.readAt[i] = Date.now();
        try {
          const got = await c.getReplicaList(key);
          await dataPath.readReplicas(key, got.replicas);
          this.counters.gets++;
        } catch (err) {
          if (err instanceof MooringError && err.code === ErrorCode.OBJECT_NOT_FOUND) this.counters.missingOnRead++;
          this.fail(err);
        }
        this.state[i] = PRESENT;
      } else {
        try {
          await c.remove(key);
          this.counters.removes++;
          this.state[i] = ABSENT;
        } catch (err) {
          if (err instanceof MooringError && err.code === ErrorCode.OBJECT_HAS_LEASE) {
            this.counters.leaseRefused++;
            this.state[i] = PRESENT;
          } else {
            this.fail(err);
            this.state[i] = UNCERTAIN;
          }
        }
      }
    }
  }

  /** Keys whose put was acknowledged and that were not removed since. */
  ackedKeys(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.state.length; i++) if (this.state[i] === PRESENT) out.push(`demo/${i}`);
    return out;
  }

  uncertainCount(): number {
    let n = 0;
    for (const s of this.state) if (s === UNCERTAIN) n++;
    return n;
  }
}

/** Batch size for the final check (the masters accept up to 4,096 keys per batch read). */
const verifyBatchKeys = 1_000;

/** Checks that every acknowledged key exists with `replicaNum` replicas. Returns the keys that do not. */
export async function verifyAcked(client: MasterClient, keys: string[], replicaNum: number): Promise<{ checked: number; lost: string[] }> {
  const lost: string[] = [];
  for (let i = 0; i < keys.length; i += verifyBatchKeys) {
    const batch = keys.slice(i, i + verifyBatchKeys);
    const results = (await client.batchGetReplicaList(batch)) as Array<{ ok: boolean; value?: { replicas: ReplicaDescriptor[] } }>;
    results.forEach((r, j) => {
      if (!r.ok || (r.value?.replicas.length ?? 0) < replicaNum) lost.push(batch[j]!);
    });
  }
  return { checked: keys.length, lost };
}

/** Reads every key's bytes back through the data path (verified there). Returns the keys that failed. */
export async function readBackAll(client: MasterClient, keys: string[], dataPath: DemoDataPath): Promise<{ intact: number; failed: string[] }> {
  const failed: string[] = [];
  let intact = 0;
  for (let i = 0; i < keys.length; i += verifyBatchKeys) {
    const batch = keys.slice(i, i + verifyBatchKeys);
    const results = (await client.batchGetReplicaList(batch)) as Array<{ ok: boolean; value?: { replicas: ReplicaDescriptor[] } }>;
    await Promise.all(results.map(async (r, j) => {
      try {
        if (!r.ok || r.value === undefined) throw new MooringError(ErrorCode.OBJECT_NOT_FOUND, 'missing');
        await dataPath.readReplicas(batch[j]!, r.value.replicas);
        intact++;
      } catch {
        failed.push(batch[j]!);
      }
    }));
  }
  return { intact, failed };
}
