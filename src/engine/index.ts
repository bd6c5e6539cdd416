// Public surface of `mooring/engine`: the native data path (memory segments, shm/TCP/RDMA transfers, NVMe tier).
// Importing this module throws MooringError(ENGINE_UNAVAILABLE) with the reason and the fix when the addon is
// not built; import it lazily (`await import('mooring/engine')`) where the control plane must run without it.
import { ErrorCode, MooringError, isErrorCode } from '../errors.js';
import { loadAddon } from './native.js';
import type { NativeEngineHandle, NativeInfo, NativeRemote, NativeResult, NativeSegment } from './native.js';

const addon = loadAddon();

/** Transfers are cut into slices of this size by the engine. */
export const sliceBytes = 64 * 1024;
/** Default deadline of one batch. */
export const defaultTransferTimeoutMs = 30_000;
/** O_DIRECT alignment for offload/promote offsets and lengths. */
export const diskAlignBytes = 4096;
/** Largest segment the engine accepts. */
export const maxSegmentBytes = 2 ** 40;
const maxWarningsKept = 100;
/** Largest single Buffer Node 20 creates (buffer.constants.MAX_LENGTH). */
const maxBufferViewBytes = 2 ** 32;

export type TransferProtocol = 'shm' | 'tcp' | 'rdma';
export type TransferStatus = 'completed' | 'failed' | 'timeout';

/**
 * What a storage node registers with the master for one DRAM segment: plain data (msgpack/JSON-safe).
 * `shm` lets a process on the same host (same `hostId`, i.e. kernel boot id) map the memfd through
 * `/proc/<pid>/fd/<fd>` and copy one-sidedly; `rdma` carries the registration when RDMA is active.
 */
export interface SegmentDescriptor {
  segmentId: number;
  /** 16 hex digits; guards against stale descriptors (a restarted owner, a reused id). */
  token: string;
  name: string;
  size: number;
  tier: 'DRAM';
  /** The path the owner offers to peers on other hosts ('rdma' when active, else 'tcp'). */
  protocol: TransferProtocol;
  /** host:port of the owner's engine TCP data server. */
  endpoint: string;
  hostId: string;
  shm?: { pid: number; fd: number; path: string };
  rdma?: { rkey: number; addr: string };
}

/**
 * What a storage node registers with the master for its NVMe tier. Plain data. DISK segments are not reachable
 * by peers: their owner moves bytes in and out with offload()/promote().
 */
export interface DiskSegmentDescriptor {
  segmentId: number;
  token: string;
  name: string;
  size: number;
  tier: 'DISK';
  endpoint: string;
  hostId: string;
  path: string;
  direct: boolean;
}

export interface TransferRequest {
  /** read: remote → local; write: local → remote. */
  op: 'read' | 'write';
  local: { segment: Segment; offset: number };
  remote: { segment: SegmentDescriptor; offset: number };
  length: number;
}

export interface TransferResult {
  status: TransferStatus;
  /** The path used: local (same engine), shm, tcp, or disk for offload/promote. */
  protocol: string;
  code?: ErrorCode;
  message?: string;
}

export interface TransferOptions {
  timeoutMs?: number;
  /** Force a path. Default: same engine → local copy; same host with shm → shm; else tcp (rdma when active). */
  protocol?: TransferProtocol;
}

export interface TierRequest {
  dram: { segment: Segment; offset: number };
  disk: { segment: DiskSegment; offset: number };
  length: number;
}

export interface EngineOptions {
  /** Address of the engine's TCP data server (default 127.0.0.1, port 0 = ephemeral). */
  host?: string;
  port?: number;
  /** Address peers should dial, put in descriptors (default: `host`; set it when binding 0.0.0.0). */
  advertiseHost?: string;
  /** Run the TCP data server (default true). A pure client may turn it off. */
  server?: boolean;
  /** Threads running network transfer jobs, tcp and rdma (default 4). */
  workerThreads?: number;
  /** Threads running memory copies, local and shm (default 2); separate so a stalled peer never delays them. */
  copyThreads?: number;
  /** Threads of the TCP data server (default 2). */
  serverThreads?: number;
  /** TCP connections per peer endpoint (default 4). */
  connectionsPerPeer?: number;
  /** Use RDMA when compiled in and a device exists (default true). */
  rdma?: boolean;
  /** Use io_uring for the NVMe tier when available (default true). */
  ioUring?: boolean;
  /** Receives fallback notices (no RDMA device, no io_uring, no O_DIRECT). Default: console.warn. */
  onWarning?: (message: string) => void;
}

/** What the engine reports about itself (the native report less its queued warnings). */
export type EngineInfo = Omit<NativeInfo, 'warnings'>;

function wrapNativeError(e: unknown): MooringError {
  if (e instanceof MooringError) return e;
  const code = (e as { code?: unknown })?.code;
  const message = e instanceof Error ? e.message : String(e);
  return new MooringError(isErrorCode(code) ? code : ErrorCode.INTERNAL, message, { cause: e });
}

function invalid(message: string): MooringError {
  return new MooringError(ErrorCode.INVALID_ARGUMENT, message);
}

function checkUint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw invalid(`${what} must be a non-negative safe integer`);
  }
  return v;
}

function convertResult(r: NativeResult): TransferResult {
  const out: TransferResult = { status: r.status, protocol: r.protocol };
  if (r.code !== undefined) out.code = isErrorCode(r.code) ? r.code : ErrorCode.TRANSFER_FAILED;
  if (r.message !== undefined) out.message = r.message;
  return out;
}

const protocolNumber: Record<TransferProtocol, number> = { shm: 2, tcp: 3, rdma: 4 };

/**
 * A DRAM segment (memfd-backed). `buffer` / `view()` are zero-copy views of its memory, detached (length 0) once
 * the segment or its engine is closed, so no JS code can reach unmapped memory.
 */
export class Segment {
  readonly id: number;
  readonly name: string;
  readonly size: number;
  readonly token: string;
  #buffer: Buffer | undefined;
  #closed = false;
  readonly #engine: Engine;
  readonly #native: NativeSegment;

  /** @internal use Engine.createSegment */
  constructor(engine: Engine, name: string, native: NativeSegment) {
    this.#engine = engine;
    this.#native = native;
    this.id = native.id;
    this.name = name;
    this.size = native.size;
    this.token = native.token;
  }

  get engine(): Engine {
    return this.#engine;
  }
  get closed(): boolean {
    return this.#closed;
  }

  #checkOpen(): void {
    if (this.#closed) throw new MooringError(ErrorCode.SEGMENT_CLOSED, `segment ${this.name} is closed`);
  }

  /** The whole segment as one Buffer (segments up to 4 GiB; use view() on larger ones). */
  get buffer(): Buffer {
    this.#checkOpen();
    if (this.#buffer === undefined) {
      if (this.size > maxBufferViewBytes) {
        throw invalid(`segment ${this.name} is larger than one Buffer can be (${maxBufferViewBytes} bytes): use view(offset, length)`);
      }
      this.#buffer = Buffer.from(this.#engine._view(this.id, 0, this.size));
    }
    return this.#buffer;
  }

  /** A zero-copy Buffer over [offset, offset + length) of the segment. */
  view(offset: number, length: number): Buffer {
    this.#checkOpen();
    checkUint(offset, 'offset');
    checkUint(length, 'length');
    if (offset + length > this.size) {
      throw new MooringError(ErrorCode.OUT_OF_RANGE, `view [${offset}, ${offset + length}) outside segment of ${this.size} bytes`);
    }
    if (length > maxBufferViewBytes) throw invalid(`a view is at most ${maxBufferViewBytes} bytes`);
    return Buffer.from(this.#engine._view(this.id, offset, length));
  }

  /** Plain, serializable description for the master and for peers. */
  descriptor(): SegmentDescriptor {
    if (this.#closed) throw new MooringError(ErrorCode.SEGMENT_CLOSED, `segment ${this.name} is closed`);
    const info = this.#engine.info;
    const d: SegmentDescriptor = {
      segmentId: this.id,
      token: this.token,
      name: this.name,
      size: this.size,
      tier: 'DRAM',
      protocol: this.#native.rkey !== undefined ? 'rdma' : 'tcp',
      endpoint: info.endpoint,
      hostId: info.hostId,
      shm: { pid: info.pid, fd: this.#native.fd, path: `/proc/${info.pid}/fd/${this.#native.fd}` },
    };
    if (this.#native.rkey !== undefined && this.#native.addr !== undefined) {
      d.rdma = { rkey: this.#native.rkey, addr: this.#native.addr.toString() };
    }
    return d;
  }

  /** Unregisters the segment; views are detached now, memory goes once in-flight transfers finish. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#engine._closeSegment(this.id);
  }

  /** @internal */
  _markClosed(): void {
    this.#closed = true;
  }
}

/** An NVMe-tier segment: a file opened with O_DIRECT (when the filesystem allows), driven by io_uring. */
export class DiskSegment {
  readonly id: number;
  readonly name: string;
  readonly size: number;
  readonly path: string;
  /** False when the filesystem refused O_DIRECT (e.g. tmpfs) and buffered I/O is used instead. */
  readonly direct: boolean;
  readonly token: string;
  #closed = false;
  readonly #engine: Engine;

  /** @internal use Engine.createDiskSegment */
  constructor(engine: Engine, name: string, path: string, id: number, size: number, direct: boolean, token: string) {
    this.#engine = engine;
    this.token = token;
    this.id = id;
    this.name = name;
    this.size = size;
    this.path = path;
    this.direct = direct;
  }
  get closed(): boolean {
    return this.#closed;
  }
  descriptor(): DiskSegmentDescriptor {
    if (this.#closed) throw new MooringError(ErrorCode.SEGMENT_CLOSED, `disk segment ${this.name} is closed`);
    const info = this.#engine.info;
    return {
      segmentId: this.id,
      token: this.token,
      name: this.name,
      size: this.size,
      tier: 'DISK',
      endpoint: info.endpoint,
      hostId: info.hostId,
      path: this.path,
      direct: this.direct,
    };
  }

  /** Closes the file (the file itself stays on disk; remove it yourself if it was scratch). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#engine._closeSegment(this.id);
  }
  /** @internal */
  _markClosed(): void {
    this.#closed = true;
  }
}

export class Engine {
  readonly #native: NativeEngineHandle;
  readonly #info: EngineInfo;
  readonly #segments = new Map<number, Segment | DiskSegment>();
  readonly #onWarning: (message: string) => void;
  #closed = false;
  #rdmaFallbackLogged = false;
  /** Recent fallback notices (bounded). */
  readonly warnings: string[] = [];

  constructor(options: EngineOptions = {}) {
    if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
    const o: Record<string, unknown> = {};
    if (options.host !== undefined) {
      if (typeof options.host !== 'string') throw invalid('host must be a string');
      o.host = options.host;
    }
    if (options.port !== undefined) o.port = checkUint(options.port, 'port');
    if (options.server !== undefined) o.server = Boolean(options.server);
    if (options.workerThreads !== undefined) o.workerThreads = checkUint(options.workerThreads, 'workerThreads');
    if (options.copyThreads !== undefined) o.copyThreads = checkUint(options.copyThreads, 'copyThreads');
    if (options.serverThreads !== undefined) o.serverThreads = checkUint(options.serverThreads, 'serverThreads');
    if (options.connectionsPerPeer !== undefined) {
      o.connectionsPerPeer = checkUint(options.connectionsPerPeer, 'connectionsPerPeer');
    }
    if (options.rdma !== undefined) o.rdma = Boolean(options.rdma);
    if (options.ioUring !== undefined) o.ioUring = Boolean(options.ioUring);
    this.#onWarning = options.onWarning ?? ((m) => console.warn(`mooring/engine: ${m}`));
    try {
      this.#native = new addon.NativeEngine(o);
    } catch (e) {
      throw wrapNativeError(e);
    }
    const i = this.#native.info();
    let endpoint = i.endpoint;
    if (options.advertiseHost !== undefined && endpoint !== '') {
      if (typeof options.advertiseHost !== 'string' || options.advertiseHost === '') throw invalid('advertiseHost must be a non-empty string');
      const host = options.advertiseHost.includes(':') ? `[${options.advertiseHost}]` : options.advertiseHost;
      endpoint = `${host}:${endpoint.slice(endpoint.lastIndexOf(':') + 1)}`;
    }
    this.#info = {
      endpoint,
      hostId: i.hostId,
      pid: i.pid,
      ioUringCompiled: i.ioUringCompiled,
      ioUringActive: i.ioUringActive,
      rdmaCompiled: i.rdmaCompiled,
      rdmaActive: i.rdmaActive,
      rdmaReason: i.rdmaReason,
      diskBackend: i.diskBackend,
      segments: 0,
      shmAttachments: 0,
    };
    this.#drainWarnings(i.warnings);
  }

  /** host:port of this engine's TCP data server ('' when started with server: false). */
  get endpoint(): string {
    return this.#info.endpoint;
  }

  get info(): EngineInfo {
    if (this.#closed) return { ...this.#info };
    const i = this.#native.info();
    this.#drainWarnings(i.warnings);
    return { ...this.#info, segments: i.segments, shmAttachments: i.shmAttachments };
  }

  get closed(): boolean {
    return this.#closed;
  }

  #warn(m: string): void {
    this.warnings.push(m);
    if (this.warnings.length > maxWarningsKept) this.warnings.shift();
    this.#onWarning(m);
  }

  #drainWarnings(ws: string[]): void {
    for (const w of ws) this.#warn(w);
  }

  #checkOpen(): void {
    if (this.#closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'the engine is closed');
  }

  /** A DRAM segment of `size` bytes (zero-filled). hugePages needs a multiple of 2 MiB and reserved huge pages. */
  createSegment(options: { size: number; name?: string; hugePages?: boolean }): Segment {
    this.#checkOpen();
    if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
    const size = checkUint(options.size, 'size');
    if (size === 0 || size > maxSegmentBytes) throw invalid(`size must be in 1..${maxSegmentBytes}`);
    const name = options.name ?? `segment-${this.#segments.size + 1}`;
    if (typeof name !== 'string') throw invalid('name must be a string');
    let native: NativeSegment;
    try {
      native = this.#native.createSegment(name, size, Boolean(options.hugePages));
    } catch (e) {
      throw wrapNativeError(e);
    }
    const s = new Segment(this, name, native);
    this.#segments.set(s.id, s);
    return s;
  }

  /** An NVMe-tier segment backed by `path` (created/extended to `size`, a multiple of 4096). */
  createDiskSegment(options: { path: string; size: number; name?: string; direct?: boolean }): DiskSegment {
    this.#checkOpen();
    if (typeof options !== 'object' || options === null) throw invalid('options must be an object');
    if (typeof options.path !== 'string' || options.path === '') throw invalid('path must be a non-empty string');
    const size = checkUint(options.size, 'size');
    const name = options.name ?? options.path;
    if (typeof name !== 'string') throw invalid('name must be a string');
    try {
      const n = this.#native.createDiskSegment(name, options.path, size, options.direct ?? true);
      const d = new DiskSegment(this, name, options.path, n.id, n.size, n.direct, n.token);
      this.#segments.set(d.id, d);
      this.#drainWarnings(this.#native.info().warnings);
      return d;
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  /** @internal */
  _view(id: number, offset: number, length: number): ArrayBuffer {
    this.#checkOpen();
    try {
      return this.#native.segmentView(id, offset, length);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  /** @internal */
  _closeSegment(id: number): void {
    this.#segments.delete(id);
    if (this.#closed) return;
    try {
      this.#native.closeSegment(id);
    } catch (e) {
      throw wrapNativeError(e);
    }
  }

  #localSegment(v: unknown, what: string): Segment {
    if (!(v instanceof Segment)) throw invalid(`${what} must be a Segment`);
    if (v.engine !== this) throw invalid(`${what} belongs to another engine`);
    if (v.closed) throw new MooringError(ErrorCode.SEGMENT_CLOSED, `${what} (${v.name}) is closed`);
    return v;
  }

  /**
   * Runs a batch. Resolves with one result per request (completed / failed / timeout, with a code); rejects
   * only for bad arguments (INVALID_ARGUMENT, OUT_OF_RANGE, SEGMENT_CLOSED, ...) or a full queue (QUEUE_FULL).
   */
  async transfer(requests: TransferRequest[], options: TransferOptions = {}): Promise<TransferResult[]> {
    this.#checkOpen();
    if (!Array.isArray(requests)) throw invalid('requests must be an array');
    const timeoutMs = checkUint(options.timeoutMs ?? defaultTransferTimeoutMs, 'timeoutMs');
    if (timeoutMs === 0 || timeoutMs > 0xffffffff) throw invalid('timeoutMs must be in 1..2^32-1');
    let force = 0;
    if (options.protocol !== undefined) {
      if (!(options.protocol in protocolNumber)) throw invalid(`protocol must be shm, tcp or rdma`);
      force = protocolNumber[options.protocol];
      if (options.protocol === 'rdma' && !this.#info.rdmaActive && !this.#rdmaFallbackLogged) {
        this.#rdmaFallbackLogged = true;
        this.#warn(`rdma requested but not active (${this.#info.rdmaReason}); falling back to tcp`);
      }
    }
    const native = requests.map((r, i) => {
      const at = `request ${i}`;
      if (typeof r !== 'object' || r === null) throw invalid(`${at} must be an object`);
      if (r.op !== 'read' && r.op !== 'write') throw invalid(`${at}: op must be 'read' or 'write'`);
      if (typeof r.local !== 'object' || r.local === null) throw invalid(`${at}: local must be {segment, offset}`);
      if (typeof r.remote !== 'object' || r.remote === null) throw invalid(`${at}: remote must be {segment, offset}`);
      const local = this.#localSegment(r.local.segment, `${at}: local.segment`);
      const localOff = checkUint(r.local.offset, `${at}: local.offset`);
      const remoteOff = checkUint(r.remote.offset, `${at}: remote.offset`);
      const length = checkUint(r.length, `${at}: length`);
      if (localOff + length > local.size) {
        throw new MooringError(ErrorCode.OUT_OF_RANGE, `${at}: local offset ${localOff} + length ${length} > size ${local.size}`);
      }
      const d = r.remote.segment;
      if (typeof d !== 'object' || d === null) throw invalid(`${at}: remote.segment must be a SegmentDescriptor`);
      const remote: NativeRemote = {
        segId: checkUint(d.segmentId, `${at}: remote.segment.segmentId`),
        token: typeof d.token === 'string' ? d.token : '',
        size: checkUint(d.size, `${at}: remote.segment.size`),
      };
      if (!/^[0-9a-f]{16}$/.test(remote.token)) throw invalid(`${at}: remote.segment.token must be 16 hex digits`);
      if (remoteOff + length > remote.size) {
        throw new MooringError(ErrorCode.OUT_OF_RANGE, `${at}: remote offset ${remoteOff} + length ${length} > size ${remote.size}`);
      }
      if (typeof d.endpoint === 'string') remote.endpoint = d.endpoint;
      if (typeof d.hostId === 'string') remote.hostId = d.hostId;
      if (d.shm !== undefined && d.shm !== null) {
        remote.shmPid = checkUint(d.shm.pid, `${at}: remote.segment.shm.pid`);
        remote.shmFd = checkUint(d.shm.fd, `${at}: remote.segment.shm.fd`);
      }
      if (d.rdma !== undefined && d.rdma !== null) {
        remote.rdmaRkey = checkUint(d.rdma.rkey, `${at}: remote.segment.rdma.rkey`);
        if (typeof d.rdma.addr !== 'string' || !/^\d{1,20}$/.test(d.rdma.addr)) {
          throw invalid(`${at}: remote.segment.rdma.addr must be a decimal string`);
        }
        remote.rdmaAddr = d.rdma.addr;
        if (!this.#info.rdmaActive && !this.#rdmaFallbackLogged) {
          this.#rdmaFallbackLogged = true;
          this.#warn(`a descriptor offers rdma but rdma is not active here (${this.#info.rdmaReason}); falling back to tcp`);
        }
      }
      return { op: r.op === 'write' ? (1 as const) : (0 as const), localSeg: local.id, localOff, remote, remoteOff, length };
    });
    let results: NativeResult[];
    try {
      results = await this.#native.transfer(native, timeoutMs, force);
    } catch (e) {
      throw wrapNativeError(e);
    }
    return results.map(convertResult);
  }

  /** Like transfer(), but rejects with the first failed request's code (TRANSFER_FAILED, TIMEOUT, ...). */
  async transferOrThrow(requests: TransferRequest[], options: TransferOptions = {}): Promise<void> {
    const results = await this.transfer(requests, options);
    const bad = results.findIndex((r) => r.status !== 'completed');
    if (bad >= 0) {
      const r = results[bad]!;
      const code = r.status === 'timeout' ? ErrorCode.TIMEOUT : (r.code ?? ErrorCode.TRANSFER_FAILED);
      throw new MooringError(code, `request ${bad}: ${r.message ?? r.status}`);
    }
  }

  /** DRAM → DISK (what eviction's demotion uses). Offsets and length 4096-aligned when the file is O_DIRECT. */
  offload(requests: TierRequest[], options: { timeoutMs?: number } = {}): Promise<TransferResult[]> {
    return this.#tier(0, requests, options);
  }

  /** DISK → DRAM. */
  promote(requests: TierRequest[], options: { timeoutMs?: number } = {}): Promise<TransferResult[]> {
    return this.#tier(1, requests, options);
  }

  async #tier(op: 0 | 1, requests: TierRequest[], options: { timeoutMs?: number }): Promise<TransferResult[]> {
    this.#checkOpen();
    if (!Array.isArray(requests)) throw invalid('requests must be an array');
    const timeoutMs = checkUint(options.timeoutMs ?? defaultTransferTimeoutMs, 'timeoutMs');
    if (timeoutMs === 0 || timeoutMs > 0xffffffff) throw invalid('timeoutMs must be in 1..2^32-1');
    const native = requests.map((r, i) => {
      const at = `request ${i}`;
      if (typeof r !== 'object' || r === null) throw invalid(`${at} must be an object`);
      if (typeof r.dram !== 'object' || r.dram === null) throw invalid(`${at}: dram must be {segment, offset}`);
      if (typeof r.disk !== 'object' || r.disk === null) throw invalid(`${at}: disk must be {segment, offset}`);
      const dram = this.#localSegment(r.dram.segment, `${at}: dram.segment`);
      const disk = r.disk.segment;
      if (!(disk instanceof DiskSegment)) throw invalid(`${at}: disk.segment must be a DiskSegment`);
      if (disk.closed) throw new MooringError(ErrorCode.SEGMENT_CLOSED, `${at}: disk segment ${disk.name} is closed`);
      if (this.#segments.get(disk.id) !== disk) throw invalid(`${at}: disk.segment belongs to another engine`);
      return {
        op,
        dramSeg: dram.id,
        dramOff: checkUint(r.dram.offset, `${at}: dram.offset`),
        diskSeg: disk.id,
        diskOff: checkUint(r.disk.offset, `${at}: disk.offset`),
        length: checkUint(r.length, `${at}: length`),
      };
    });
    let results: NativeResult[];
    try {
      results = await this.#native.disk(native, timeoutMs);
    } catch (e) {
      throw wrapNativeError(e);
    }
    return results.map((r) => convertResult({ ...r, protocol: 'disk' }));
  }

  /**
   * Stops the data server and the engine's threads. Batches still running complete as failed (UNAVAILABLE);
   * every segment's views are detached. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#segments.values()) s._markClosed();
    this.#segments.clear();
    this.#native.close();
  }
}

/** memcpy throughput of this machine in GB/s (native loop; the physical limit of the shm path). */
export function measureMemcpyGBps(bytes = 64 * 1024 * 1024, iterations = 8): number {
  return addon.memcpyBench(checkUint(bytes, 'bytes'), checkUint(iterations, 'iterations'));
}
