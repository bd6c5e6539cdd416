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
