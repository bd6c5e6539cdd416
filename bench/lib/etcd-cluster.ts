/**
 * A 3-node etcd cluster on 127.0.0.1 for side-by-side benchmarks (Debian `etcd-server`; fsync on, as etcd does
 * by default). Each member is a real process with its own data dir; kill/restart like KvCluster.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { noop } from 'cockatiel';
import { Etcd3, type IOptions } from 'etcd3';
import { freePorts } from './kv-cluster.js';

/** Per-call deadline of the failover benchmark's etcd clients (short, so a call stuck on a killed member retries). */
export const etcdFailoverCallDeadlineMs = 300;
/** Per-call deadline for throughput runs (never hit by a healthy cluster). */
export const etcdDefaultCallDeadlineMs = 30_000;

export const etcdInstallHint = 'etcd not found: install it with `apt-get update && apt-get install -y etcd-server etcd-client` (or put an etcd binary on PATH / set ETCD_BIN)';

/**
 * etcd3's default fault handling opens a per-host circuit breaker for 5 s after 3 failures and retries globally;
 * during a failover that would keep a client off a healthy member for seconds and hide etcd's own recovery
 * time. Benchmarks handle retries themselves (cockatiel comes with etcd3).
 */
export function etcdClient(hosts: string | string[], extra: Partial<IOptions> = {}, deadlineMs = etcdDefaultCallDeadlineMs): Etcd3 {
  return new Etcd3({
    hosts,
    dialTimeout: 1_000,
    faultHandling: { host: () => noop, global: noop },
    // gRPC waits for a dead host's channel otherwise: a deadline makes a call to a killed member fail and retry.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + deadlineMs }),
    ...extra,
  });
}

export function etcdBinary(): string | null {
  const bin = process.env.ETCD_BIN ?? 'etcd';
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? bin : null;
}

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc: ChildProcess | null;
  exited: Promise<void> | null;
}

export interface EtcdClusterOptions {
  /** etcd's heartbeat and election timeouts (ms); etcd's defaults are 100 / 1000. */
  heartbeatMs?: number;
  electionMs?: number;
}

export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly root: string;
  private readonly initialCluster: string;

  private constructor(private readonly bin: string, root: string, members: EtcdMember[], private readonly opts: EtcdClusterOptions) {
    this.root = root;
    this.members = members;
    this.initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peerPort}`).join(',');
  }

  static async create(bin: string, opts: EtcdClusterOptions = {}, size = 3): Promise<EtcdCluster> {
    const root = mkdtempSync(path.join(os.tmpdir(), 'mooring-etcd-'));
    const ports = await freePorts(size * 2);
    const members = Array.from({ length: size }, (_, i) => ({
      name: `e${i + 1}`,
      clientPort: ports[2 * i]!,
      peerPort: ports[2 * i + 1]!,
      dataDir: path.join(root, `e${i + 1}`),
      proc: null,
      exited: null,
    }));
    return new EtcdCluster(bin, root, members, opts);
  }

  endpoints(): string[] {
    return this.members.map((m) => `http://127.0.0.1:${m.clientPort}`);
  }

  member(name: string): EtcdMember {
    const m = this.members.find((x) => x.name === name);
    if (m === undefined) throw new Error(`no etcd member ${name}`);
    return m;
  }

  async startAll(): Promise<void> {
    for (const m of this.members) this.start(m.name);
    await this.waitWritable();
  }

  /** Starts (or restarts from its data dir) one member; does not wait. */
  start(name: string): void {
    const m = this.member(name);
    const logFd = openSync(path.join(this.root, `${m.name}.log`), 'a');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.clientPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', this.initialCluster,
      '--initial-cluster-token', 'mooring-bench',
      '--initial-cluster-state', 'new',
      '--heartbeat-interval', String(this.opts.heartbeatMs ?? 100),
      '--election-timeout', String(this.opts.electionMs ?? 1000),
      '--log-level', 'warn',
    ];
    const proc = spawn(this.bin, args, { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    m.proc = proc;
    m.exited = new Promise((resolve) => proc.once('exit', () => {
      if (m.proc === proc) m.proc = null;
      resolve();
    }));
  }

  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const m = this.member(name);
    if (m.proc === null || m.exited === null) return;
    const exited = m.exited;
    m.proc.kill(signal);
    await exited;
  }

  /** The current leader's name (asks each running member's status). */
  async leader(): Promise<string | null> {
    for (const m of this.members) {
      if (m.proc === null) continue;
      const c = etcdClient(`http://127.0.0.1:${m.clientPort}`, { dialTimeout: 500 });
      try {
        const st = await c.maintenance.status();
        const id = st.leader;
        if (id !== undefined && id === st.header.member_id) return m.name;
      } catch {
        // not reachable now
      } finally {
        c.close();
      }
    }
    return null;
  }

  async waitWritable(timeoutMs = 30_000): Promise<void> {
    const c = etcdClient(this.endpoints());
    const start = Date.now();
    try {
      for (;;) {
        try {
          await c.put('__ready').value('1');
          return;
        } catch (err) {
          if (Date.now() - start > timeoutMs) throw new Error(`etcd not writable within ${timeoutMs} ms: ${String(err)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      c.close();
    }
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m.name).catch(() => {})));
    rmSync(this.root, { recursive: true, force: true });
  }
}
