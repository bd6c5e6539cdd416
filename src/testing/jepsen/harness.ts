/**
 * Real-process cluster harness for test/e2e and the fault campaign: master processes (own LevelDB dirs, kept
 * across restarts), storage-client processes (engine + mounted segments), and a FaultProxy on every directed
 * master ↔ master raft link. Children run the compiled JS in dist/ (run `npm run build:ts` first) and exit when
 * this process goes away (MOORING_EXIT_WITH_PARENT).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MasterClient } from '../../master/client.js';
import { FaultProxy, type ProxyMode } from './proxy.js';
import { freePorts } from '../ports.js';
import { snapshotDist } from '../dist-snapshot.js';
import { repoRoot as checkoutRoot } from '../../util/repo-root.js';

/** A child must print its ready line within this long. */
export const childReadyTimeoutMs = 30_000;
const stderrTailChars = 4_000;

/** The checkout root, from this file's own location. */
export function repoRoot(): string {
  return checkoutRoot(import.meta.url);
}

export function distScript(rel: string, distRoot = path.join(repoRoot(), 'dist')): string {
  const p = path.join(distRoot, 'src', rel);
  if (!existsSync(p)) throw new Error(`${p} is missing: run \`npm run build:ts\` first`);
  return p;
}

export { snapshotDist };
export { freePorts };

export type ProcState = 'up' | 'stopped' | 'down';

export class ManagedProcess {
  readonly name: string;
  child: ChildProcess | null = null;
  state: ProcState = 'down';
  ready: Record<string, unknown> = {};
  stderrTail = '';
  private exitWaiters: Array<() => void> = [];

  constructor(name: string) {
    this.name = name;
  }

  async start(script: string, args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
    // MOORING_CHILD_NODE_ARGS: extra node flags for every child (diagnostics, e.g. "--cpu-prof --cpu-prof-dir=D").
    const nodeArgs = (process.env.MOORING_CHILD_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const child = spawn(process.execPath, [...nodeArgs, script, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, MOORING_EXIT_WITH_PARENT: '1', ...env },
    });
    this.child = child;
    this.state = 'up';
    child.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-stderrTailChars);
    });
    child.on('exit', () => {
      if (this.child === child) {
        this.child = null;
        this.state = 'down';
      }
      for (const w of this.exitWaiters.splice(0)) w();
    });
    return new Promise((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${this.name} not ready within ${childReadyTimeoutMs} ms; stderr: ${this.stderrTail}`));
      }, childReadyTimeoutMs);
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const nl = buf.indexOf('\n');
        if (nl < 0) return;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const msg = JSON.parse(line) as Record<string, unknown>;
          if (msg.ready === true) {
            clearTimeout(timer);
            this.ready = msg;
            resolve(msg);
          }
        } catch {
          /* not our line */
        }
      });
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code ?? sig}) before ready; stderr: ${this.stderrTail}`));
      });
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.child === null) return;
    try {
      this.child.kill(sig);
    } catch {
      /* already gone */
    }
    if (sig === 'SIGSTOP') this.state = 'stopped';
    if (sig === 'SIGCONT' && this.state === 'stopped') this.state = 'up';
  }

  /** SIGKILL (after SIGCONT, so a stopped process dies too) and wait for the exit. */
  async kill(): Promise<void> {
    if (this.child === null) return;
    const exited = new Promise<void>((r) => this.exitWaiters.push(r));
    this.signal('SIGCONT');
    this.signal('SIGKILL');
    await exited;
  }

  /** SIGTERM and wait (SIGKILL after `timeoutMs`). */
  async terminate(timeoutMs = 10_000): Promise<void> {
    if (this.child === null) return;
    const exited = new Promise<void>((r) => this.exitWaiters.push(r));
    this.signal('SIGCONT');
    this.signal('SIGTERM');
    const t = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(t);
  }
}

export interface ClusterOptions {
  masters?: number;
  storageNodes?: number;
  /** Put a FaultProxy on every master → master raft link (default true). */
  proxies?: boolean;
  /** Extra master config fields (merged into each node's config). */
  masterConfig?: Record<string, unknown>;
  storage?: { memoryBytes?: number; diskBytes?: number; slotBytes?: number; pingMs?: number };
  root?: string;
  /**
   * Give master `fullDisk.node` a data dir on its own small tmpfs (needs root and mount; skipped with a reason
   * otherwise) so fillDisk() can make its disk full.
   */
  fullDisk?: { node: number; bytes: number };
  /** Run children from a private copy of dist/ (default true; see snapshotDist). */
  snapshot?: boolean;
  /** Masters append info-level logs to <root>/<id>.log (default false). */
  masterLogs?: boolean;
}

/** Filler writes in chunks of this size until the filesystem says ENOSPC. */
const fillChunkBytes = 1024 * 1024;

interface MasterSlot {
  id: string;
  proc: ManagedProcess;
  config: Record<string, unknown>;
  rpcPort: number;
}

interface StorageSlot {
  proc: ManagedProcess;
  index: number;
  zone: string;
  incarnation: number;
  clientId: string;
}

export class ProcessCluster {
  readonly root: string;
  readonly masters: MasterSlot[] = [];
  readonly storage: StorageSlot[] = [];
  /** proxies.get(`${from}->${to}`) */
  readonly proxies = new Map<string, FaultProxy>();
  readonly endpoints: string[] = [];
  private readonly opts: ClusterOptions;
  /** The masters' shared peer token (peers authenticate; a fresh secret per campaign). */
  private readonly peerToken = randomBytes(32).toString('hex');
  private readonly ownsRoot: boolean;
  private readonly admin: Map<string, MasterClient> = new Map();
  /** Every storage clientId that has died (killed incarnations). */
  readonly deadStorageClients = new Set<string>();
  private distRoot = path.join(repoRoot(), 'dist');
  private childEnv: Record<string, string> = {};
  /** The tmpfs of the full-disk node, or why there is none. */
  fullDiskMount: string | null = null;
  fullDiskUnavailable: string | null = null;

  private constructor(opts: ClusterOptions) {
    this.opts = opts;
    this.ownsRoot = opts.root === undefined;
    this.root = opts.root ?? mkdtempSync(path.join(tmpdir(), 'mooring-cluster-'));
  }

  static async start(opts: ClusterOptions = {}): Promise<ProcessCluster> {
    const c = new ProcessCluster(opts);
    try {
      await c.boot();
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  private async boot(): Promise<void> {
    if (this.opts.snapshot ?? true) {
      const snap = snapshotDist(path.join(this.root, 'snapshot'));
      this.distRoot = snap.distRoot;
      this.childEnv = snap.env;
    }
    const n = this.opts.masters ?? 3;
    const ports = await freePorts(n * 2);
    const ids = Array.from({ length: n }, (_, i) => `m${i + 1}`);
    const raftPorts = ids.map((_, i) => ports[i * 2]!);
    const rpcPorts = ids.map((_, i) => ports[i * 2 + 1]!);
    const useProxies = this.opts.proxies ?? true;
    for (let i = 0; i < n; i++) {
      // Node i reaches node j through the proxy of link i→j.
      const peers = [];
      for (let j = 0; j < n; j++) {
        let raftPort = raftPorts[j]!;
        if (useProxies && i !== j) {
          const p = new FaultProxy(`${ids[i]}->${ids[j]}`, { host: '127.0.0.1', port: raftPorts[j]! });
          raftPort = await p.start();
          this.proxies.set(p.label, p);
        }
        peers.push({ id: ids[j]!, host: '127.0.0.1', raftPort, rpcPort: rpcPorts[j]! });
      }
      let dataDir = path.join(this.root, ids[i]!);
      if (this.opts.fullDisk !== undefined && this.opts.fullDisk.node === i) {
        const mnt = path.join(this.root, `${ids[i]}-tmpfs`);
        mkdirSync(mnt, { recursive: true });
        const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${this.opts.fullDisk.bytes}`, 'tmpfs', mnt], { encoding: 'utf8' });
        if (r.status === 0) {
          this.fullDiskMount = mnt;
          dataDir = path.join(mnt, 'data');
        } else {
          this.fullDiskUnavailable = `mount tmpfs failed: ${(r.stderr || r.error?.message || 'unknown').trim()}`;
        }
      }
      const config = {
        nodeId: ids[i]!,
        peerToken: this.peerToken,
        dataDir,
        listen: { host: '127.0.0.1', raftPort: raftPorts[i]!, rpcPort: rpcPorts[i]!, httpPort: 0 },
        peers,
        clientTtlMs: 4_000,
        leaseTtlMs: 2_000,
        ...this.opts.masterConfig,
        // Merged, not replaced: a masterConfig.raft adds to these timers.
        raft: { tickMs: 20, electionTimeoutTicks: 10, ...(this.opts.masterConfig?.raft as Record<string, unknown> | undefined) },
      };
      this.masters.push({ id: ids[i]!, proc: new ManagedProcess(ids[i]!), config, rpcPort: rpcPorts[i]! });
      this.endpoints.push(`127.0.0.1:${rpcPorts[i]}`);
    }
    await Promise.all(this.masters.map((_, i) => this.startMaster(i)));
    await this.waitForLeader();
    const s = this.opts.storageNodes ?? 3;
    for (let i = 0; i < s; i++) this.storage.push({ proc: new ManagedProcess(`s${i + 1}`), index: i, zone: `z${i + 1}`, incarnation: 0, clientId: '' });
    await Promise.all(this.storage.map((_, i) => this.startStorage(i)));
  }

  async startMaster(i: number): Promise<void> {
    const m = this.masters[i]!;
    const env = { ...this.childEnv, ...(this.opts.masterLogs === true ? { MOORING_LOG_FILE: path.join(this.root, `${m.id}.log`) } : {}) };
    await m.proc.start(distScript('testing/jepsen/master-main.js', this.distRoot), [JSON.stringify(m.config)], env);
  }

  /**
   * Starts a killed master again. Its port may meanwhile be the local end of some outgoing connection (free ports
   * come from the ephemeral range), so EADDRINUSE is retried, every 250 ms, for up to 10 s.
   */
  async restartMaster(i: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.startMaster(i);
        return;
      } catch (err) {
        if (attempt >= 40 || !String(err).includes('EADDRINUSE')) throw err;
        await sleep(250);
      }
    }
  }

  async startStorage(i: number): Promise<void> {
    const s = this.storage[i]!;
    s.incarnation++;
    const st = this.opts.storage ?? {};
    const args = [
      '--masters', this.endpoints.join(','),
      '--zone', s.zone,
      '--client-id', `store-${s.index + 1}-${s.incarnation}-${process.pid}`,
      '--memory-bytes', String(st.memoryBytes ?? 32 << 20),
      '--ping-ms', String(st.pingMs ?? 300),
    ];
    if (st.slotBytes !== undefined) args.push('--slot-bytes', String(st.slotBytes));
    if (st.diskBytes !== undefined) {
      const dir = path.join(this.root, `store-${s.index + 1}`);
      mkdirSync(dir, { recursive: true });
      args.push('--disk', path.join(dir, `nvme-${s.incarnation}.bin`), '--disk-bytes', String(st.diskBytes));
    }
    const ready = await s.proc.start(distScript('store/storage-node-main.js', this.distRoot), args, this.childEnv);
    s.clientId = String(ready.clientId);
  }

  async killStorage(i: number): Promise<string> {
    const s = this.storage[i]!;
    const id = s.clientId;
    await s.proc.kill();
    this.deadStorageClients.add(id);
    return id;
  }

  /** A MasterClient bound to one endpoint (no failover), for status probes. */
  private probe(endpoint: string): MasterClient {
    let c = this.admin.get(endpoint);
    if (c === undefined) {
      c = new MasterClient({ endpoints: [endpoint], retry: { maxAttempts: 1 }, requestTimeoutMs: 1_000 });
      this.admin.set(endpoint, c);
    }
    return c;
  }

  /** Index of the master that says it is leader (among running ones), or -1. */
  async leaderIndex(): Promise<number> {
    const answers = await Promise.all(this.masters.map(async (m, i) => {
      if (m.proc.state !== 'up') return -1;
      try {
        const st = await this.probe(this.endpoints[i]!).status(this.endpoints[i]!);
        return st.role === 'leader' ? i : -1;
      } catch {
        return -1;
      }
    }));
    return answers.find((i) => i >= 0) ?? -1;
  }

  async waitForLeader(timeoutMs = 30_000): Promise<number> {
    const start = Date.now();
    for (;;) {
      const i = await this.leaderIndex();
      if (i >= 0) return i;
      if (Date.now() - start > timeoutMs) throw new Error(`no leader within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  setLink(from: number, to: number, mode: ProxyMode, delayMs = 0): void {
    this.proxies.get(`${this.masters[from]!.id}->${this.masters[to]!.id}`)?.setMode(mode, delayMs);
  }

  /** Cut every link to and from master i (its clients still reach it: a minority partition). */
  isolate(i: number, mode: ProxyMode = 'cut'): void {
    for (let j = 0; j < this.masters.length; j++) {
      if (j === i) continue;
      this.setLink(i, j, mode);
      this.setLink(j, i, mode);
    }
  }

  /** Fills the full-disk node's filesystem to the last byte. False when there is no such filesystem. */
  fillDisk(): boolean {
    if (this.fullDiskMount === null) return false;
    const fd = openSync(path.join(this.fullDiskMount, 'filler'), 'w');
    const chunk = Buffer.alloc(fillChunkBytes, 0xee);
    try {
      for (let size = fillChunkBytes; ; ) {
        try {
          writeSync(fd, chunk, 0, size);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          if (size === 1) break;
          size = Math.max(1, size >> 1); // fill the tail too
        }
      }
    } finally {
      closeSync(fd);
    }
    return true;
  }

  freeDisk(): void {
    if (this.fullDiskMount !== null) rmSync(path.join(this.fullDiskMount, 'filler'), { force: true });
  }

  heal(): void {
    for (const p of this.proxies.values()) p.setMode('pass');
  }

  /** Stops everything; `keep` leaves the root (logs, data) for a failure report. */
  async close(options: { keep?: boolean } = {}): Promise<void> {
    for (const c of this.admin.values()) await c.close().catch(() => {});
    await Promise.all(this.storage.map((s) => s.proc.kill()));
    await Promise.all(this.masters.map((m) => m.proc.kill()));
    for (const p of this.proxies.values()) await p.close();
    if (this.fullDiskMount !== null) spawnSync('umount', ['-l', this.fullDiskMount]);
    if (this.ownsRoot && options.keep !== true) rmSync(this.root, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
