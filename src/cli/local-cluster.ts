/**
 * A cluster of `mooring master` CHILD PROCESSES on 127.0.0.1: generated configs in one directory, real ports,
 * real data dirs. Used by `mooring demo`, bench/master.ts and the process tests (the same code path an operator
 * runs). Children run the compiled CLI (dist/src/cli/main.js) with --exit-with-parent, so even a parent killed
 * with SIGKILL leaves no orphans behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { ErrorCode, MooringError } from '../errors.js';

/** How long a child may take to print its ready line / answer /ready before start() gives up. */
export const defaultReadyTimeoutMs = 30_000;
/** A graceful stop (SIGTERM) longer than this is ended with SIGKILL. */
export const defaultStopTimeoutMs = 15_000;
const pollIntervalMs = 50;
const httpProbeTimeoutMs = 1_000;

export interface LocalNode {
  id: string;
  dir: string;
  configPath: string;
  logPath: string;
  ports: { raft: number; rpc: number; http: number };
  proc: ChildProcess | null;
  /** Exit code (or 128 + signal) of the last process that ran for this node, null while running / never run. */
  lastExit: number | null;
}

export interface LocalClusterOptions {
  size?: number;
  /** Parent directory for the cluster; default a new temp dir (removed by destroy()). */
  dir?: string;
  clusterId?: string;
  /** Extra config fields merged into every node's file (e.g. {raft: {tickMs: 10}}, {tls: …}, {adminToken: …}). */
  extraConfig?: Record<string, unknown>;
  logLevel?: string;
  /** Node binary (default: this one) and extra node flags (e.g. ['--cpu-prof']). */
  nodeArgs?: string[];
}

/** Finds the package root (the directory with package.json) above this module, in src/ or dist/src/. */
export function packageRoot(): string {
  let d = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(d, 'package.json')) && existsSync(path.join(d, 'bin', 'mooring.js'))) return d;
    d = path.dirname(d);
  }
  throw new MooringError(ErrorCode.INTERNAL, 'cannot find the mooring package root');
}

export function cliMainPath(): string {
  const p = path.join(packageRoot(), 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(p)) throw new MooringError(ErrorCode.INTERNAL, `${p} is missing: run \`npm run build:ts\` first`);
  return p;
}

/** Distinct free TCP ports on 127.0.0.1 (bound, read, released; a small race with other processes remains). */
export async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export async function httpGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(httpProbeTimeoutMs) });
  return { status: res.status, body: await res.text() };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class LocalCluster {
  readonly dir: string;
  readonly nodes: LocalNode[];
  readonly clusterId: string;
  /** The shared peer token file every node's config names (peerTokenFile). */
  get peerTokenFile(): string {
    return path.join(this.dir, 'peer.token');
  }
  private readonly ownsDir: boolean;
  private readonly nodeArgs: string[];
  private destroyed = false;

  private constructor(dir: string, ownsDir: boolean, nodes: LocalNode[], clusterId: string, nodeArgs: string[]) {
    this.dir = dir;
    this.ownsDir = ownsDir;
    this.nodes = nodes;
    this.clusterId = clusterId;
    this.nodeArgs = nodeArgs;
  }

  /** Writes one config per node (nothing started yet). */
  static async create(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
    const size = opts.size ?? 3;
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? mkdtempSync(path.join(tmpdir(), 'mooring-cluster-'));
    mkdirSync(dir, { recursive: true });
    const clusterId = opts.clusterId ?? 'mooring-local';
    // Peers authenticate: a fresh random token per cluster, in a file only this user can read.
    const peerTokenFile = path.join(dir, 'peer.token');
    writeFileSync(peerTokenFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const ports = await freeLoopbackPorts(size * 3);
    const peers = Array.from({ length: size }, (_, i) => ({
      id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 3]!, rpcPort: ports[i * 3 + 1]!, httpPort: ports[i * 3 + 2]!,
    }));
    const nodes = peers.map((p): LocalNode => {
      const nodeDir = path.join(dir, p.id);
      mkdirSync(nodeDir, { recursive: true });
      const config = {
        nodeId: p.id,
        clusterId,
        dataDir: path.join(nodeDir, 'data'),
        listen: { host: '127.0.0.1', raftPort: p.raftPort, rpcPort: p.rpcPort, httpPort: p.httpPort },
        peers,
        peerTokenFile,
        log: { level: opts.logLevel ?? 'info' },
        ...(opts.extraConfig ?? {}),
      };
      const configPath = path.join(nodeDir, `${p.id}.yaml`);
      writeFileSync(configPath, stringify(config));
      return { id: p.id, dir: nodeDir, configPath, logPath: path.join(nodeDir, `${p.id}.log`), ports: { raft: p.raftPort, rpc: p.rpcPort, http: p.httpPort }, proc: null, lastExit: null };
    });
    return new LocalCluster(dir, ownsDir, nodes, clusterId, opts.nodeArgs ?? []);
  }

  get endpoints(): string[] {
    return this.nodes.map((n) => `127.0.0.1:${n.ports.rpc}`);
  }

  node(id: string): LocalNode {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `no node ${id}`);
    return n;
  }

  /** Spawns `mooring master --config <file>` for a node (its log appended to <node>/<id>.log). */
  spawn(id: string): ChildProcess {
    if (this.destroyed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'cluster destroyed');
    const n = this.node(id);
    if (n.proc !== null) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${id} is already running`);
    const fd = openSync(n.logPath, 'a');
    const proc = spawn(process.execPath, [...this.nodeArgs, cliMainPath(), 'master', '--config', n.configPath, '--exit-with-parent'], {
      stdio: ['ignore', fd, fd],
      cwd: n.dir,
    });
    closeSync(fd);
    n.proc = proc;
    n.lastExit = null;
    proc.on('exit', (code, signal) => {
      n.lastExit = code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : signal === 'SIGINT' ? 2 : 1);
      if (n.proc === proc) n.proc = null;
    });
    return proc;
  }

  /** Starts every node (or the given ones) and waits until each answers /ready. */
  async start(ids: string[] = this.nodes.map((n) => n.id), readyTimeoutMs = defaultReadyTimeoutMs): Promise<void> {
    for (const id of ids) this.spawn(id);
    await Promise.all(ids.map((id) => this.waitReady(id, readyTimeoutMs)));
  }

  /** Waits until the node's /ready answers 200 (it knows a leader and applied everything committed). */
  async waitReady(id: string, timeoutMs = defaultReadyTimeoutMs): Promise<void> {
    const n = this.node(id);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (n.proc === null) throw new MooringError(ErrorCode.UNAVAILABLE, `${id} exited (code ${n.lastExit}) before it was ready; log: ${this.tail(id)}`);
      try {
        if ((await httpGet(n.ports.http, '/ready')).status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new MooringError(ErrorCode.TIMEOUT, `${id} not ready after ${timeoutMs} ms; log: ${this.tail(id)}`);
      await sleep(pollIntervalMs);
    }
  }

  /**
   * /status of a running node, or null when it does not answer. `stateHash` adds the whole-state hash: O(state) on
   * the node's event loop (a 300k-object master stalls ~0.3 s), so only for callers comparing replicas; leader()
   * and waitLeader() poll without it.
   */
  async status(id: string, opts: { stateHash?: boolean } = {}): Promise<Record<string, unknown> | null> {
    const n = this.node(id);
    if (n.proc === null) return null;
    try {
      const r = await httpGet(n.ports.http, opts.stateHash === true ? '/status?stateHash=1' : '/status');
      return r.status === 200 ? (JSON.parse(r.body) as Record<string, unknown>) : null;
    } catch {
      return null;
    }
  }

  /** The id of the node that reports itself leader (the one with the highest term if several do), or null. */
  async leader(): Promise<string | null> {
    const all = await Promise.all(this.nodes.map(async (n) => ({ id: n.id, s: await this.status(n.id) })));
    const leaders = all.filter((x) => x.s?.role === 'leader').sort((a, b) => Number(b.s!.term) - Number(a.s!.term));
    return leaders[0]?.id ?? null;
  }

  async waitLeader(timeoutMs = defaultReadyTimeoutMs, exclude?: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = await this.leader();
      if (l !== null && l !== exclude) return l;
      if (Date.now() > deadline) throw new MooringError(ErrorCode.TIMEOUT, `no leader after ${timeoutMs} ms`);
      await sleep(pollIntervalMs);
    }
  }

  /** Sends a signal; resolves with the exit code once the process is gone (SIGKILL after stopTimeoutMs). */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL', stopTimeoutMs = defaultStopTimeoutMs): Promise<number | null> {
    const n = this.node(id);
    const proc = n.proc;
    if (proc === null) return n.lastExit;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), stopTimeoutMs);
    await exited;
    clearTimeout(timer);
    return n.lastExit;
  }

  /** Graceful stop: SIGTERM and wait for the exit code. */
  stop(id: string, stopTimeoutMs = defaultStopTimeoutMs): Promise<number | null> {
    return this.kill(id, 'SIGTERM', stopTimeoutMs);
  }

  /** The last lines of a node's log (for error messages). */
  tail(id: string, lines = 8): string {
    try {
      return readFileSync(this.node(id).logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Kills every child (SIGKILL) and removes the directory when it created it. Idempotent. */
  async destroy(opts: { keepDir?: boolean } = {}): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all(this.nodes.map((n) => this.kill(n.id, 'SIGKILL')));
    if (this.ownsDir && opts.keepDir !== true) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last-resort cleanup (process 'exit' handlers cannot wait). */
  killAllSync(): void {
    for (const n of this.nodes) {
      try {
        n.proc?.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}
