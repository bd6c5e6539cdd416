/**
 * Launches a Mooring KV cluster as real OS processes (dist/src/kvstore/server-main.js) on 127.0.0.1, each node
 * with its own data dir under one temp root; kill (any signal), restart from the same dir, add new members.
 * Shared by the real-process tests (test/helpers/process-cluster.ts) and the benchmarks. Needs `npm run build:ts`.
 * Each node's stderr (its pino log) goes to <root>/<id>.log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { KvClient } from '../../src/kvstore/client.js';
import type { KvServerConfig, KvStatus } from '../../src/kvstore/server.js';
import { freePorts } from '../../src/testing/ports.js';
import { snapshotDist } from '../../src/testing/dist-snapshot.js';
import { repoRoot as checkoutRoot } from '../../src/util/repo-root.js';

export const nodeReadyTimeoutMs = 20_000;
export const nodeExitTimeoutMs = 15_000;

/** The checkout root, from this file's own location. */
export function repoRoot(): string {
  return checkoutRoot(import.meta.url);
}

export function serverMainPath(distRoot = path.join(repoRoot(), 'dist')): string {
  const p = path.join(distRoot, 'src', 'kvstore', 'server-main.js');
  if (!existsSync(p)) throw new Error(`${p} is missing: run \`npm run build:ts\` first`);
  return p;
}

/** Ports that were free a moment ago (all bound at once, so they are distinct). */
export { freePorts };

export interface KvNode {
  id: string;
  config: KvServerConfig;
  configPath: string;
  logPath: string;
  proc: ChildProcess | null;
  /** Resolves when the current process exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null;
  starts: number;
}

export interface KvClusterOptions {
  size?: number;
  clusterId?: string;
  /** Merged into every node's config (tickMs, snapshotEveryEntries, ...). */
  nodeConfig?: Partial<KvServerConfig>;
  logLevel?: string;
  /** Extra node flags, e.g. ['--cpu-prof']. */
  nodeArgs?: string[];
  /** Ids to give the founding members (default n1..nN). */
  ids?: string[];
  /**
   * Run the nodes from a private copy of dist/ under the cluster's root (default true): a rebuild of the checkout
   * while the cluster runs (another bench builds first) cannot break a node it restarts (dist-snapshot.ts).
   */
  snapshot?: boolean;
}

export class KvCluster {
  readonly nodes = new Map<string, KvNode>();
  readonly root: string;
  readonly clusterId: string;
  private readonly admin: KvClient;
  /** Where the nodes' code is (a private copy unless `snapshot: false`) and the env they need. */
  private readonly distRoot: string;
  private readonly childEnv: Record<string, string>;

  private constructor(root: string, private readonly opts: KvClusterOptions, founders: KvNode[]) {
    this.root = root;
    const snap = opts.snapshot === false ? null : snapshotDist(path.join(root, 'snapshot'));
    this.distRoot = snap?.distRoot ?? path.join(repoRoot(), 'dist');
    this.childEnv = snap?.env ?? {};
    this.clusterId = opts.clusterId ?? 'kv-test';
    for (const n of founders) this.nodes.set(n.id, n);
    this.admin = new KvClient({ endpoints: founders.map((n) => `127.0.0.1:${n.config.rpc.port}`), clusterId: this.clusterId, timeoutMs: 2_000, maxAttempts: 1 });
  }

  /** Writes configs for a brand-new cluster (nothing started yet). */
  static async create(opts: KvClusterOptions = {}): Promise<KvCluster> {
    const size = opts.size ?? 3;
    const ids = opts.ids ?? Array.from({ length: size }, (_, i) => `n${i + 1}`);
    const root = mkdtempSync(path.join(os.tmpdir(), 'mooring-kv-'));
    const ports = await freePorts(ids.length * 2);
    const peers = ids.map((id, i) => ({ id, host: '127.0.0.1', raftPort: ports[2 * i]!, rpcPort: ports[2 * i + 1]! }));
    const clusterId = opts.clusterId ?? 'kv-test';
    const nodes = peers.map((p) => makeNode(root, { id: p.id, clusterId, bootstrap: true, peers, raftPort: p.raftPort, rpcPort: p.rpcPort }, opts));
    return new KvCluster(root, opts, nodes);
  }

  endpoint(id: string): string {
    return `127.0.0.1:${this.node(id).config.rpc.port}`;
  }

  endpoints(ids: string[] = [...this.nodes.keys()]): string[] {
    return ids.map((id) => this.endpoint(id));
  }

  node(id: string): KvNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  isRunning(id: string): boolean {
    return this.node(id).proc !== null;
  }

  running(): string[] {
    return [...this.nodes.values()].filter((n) => n.proc !== null).map((n) => n.id);
  }

  async startAll(): Promise<void> {
    await Promise.all([...this.nodes.keys()].map((id) => this.start(id)));
  }

  /** Starts (or restarts, from the same data dir) a node and waits for its ready line. */
  async start(id: string): Promise<void> {
    const n = this.node(id);
    if (n.proc !== null) throw new Error(`${id} is already running`);
    const logFd = openSync(n.logPath, 'a');
    const proc = spawn(process.execPath, [...(this.opts.nodeArgs ?? []), serverMainPath(this.distRoot), '--config', n.configPath], {
      stdio: ['ignore', 'pipe', logFd],
      env: { ...process.env, ...this.childEnv },
      cwd: this.root,
    });
    closeSync(logFd);
    n.proc = proc;
    n.starts++;
    n.exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
      if (n.proc === proc) n.proc = null;
      resolve({ code, signal });
    }));
    const exited = n.exited;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${id} not ready within ${nodeReadyTimeoutMs} ms\n${this.logTail(id)}`)), nodeReadyTimeoutMs);
      const lines = createInterface({ input: proc.stdout! });
      lines.on('line', (line) => {
        try {
          if ((JSON.parse(line) as { ready?: boolean }).ready === true) {
            clearTimeout(timer);
            resolve();
            return;
          }
        } catch {
          // not the ready line
        }
        // Anything else a node prints (node flags such as --trace-gc write to stdout) goes to its log.
        appendFileSync(n.logPath, `${line}\n`);
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${id} exited before ready (code ${code}, signal ${signal})\n${this.logTail(id)}`));
      });
    });
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const n = this.node(id);
    if (n.proc === null || n.exited === null) throw new Error(`${id} is not running`);
    const exited = n.exited;
    n.proc.kill(signal);
    const timer = setTimeout(() => n.proc?.kill('SIGKILL'), nodeExitTimeoutMs);
    const r = await exited;
    clearTimeout(timer);
    return r;
  }

  /** Config for a new member that will join through addMember (bootstrap false); not started. */
  async addNodeConfig(id: string): Promise<KvNode> {
    const [raftPort, rpcPort] = await freePorts(2);
    const peers = [...this.nodes.values()].map((n) => ({ id: n.id, host: '127.0.0.1', raftPort: n.config.raft.port, rpcPort: n.config.rpc.port }));
    peers.push({ id, host: '127.0.0.1', raftPort: raftPort!, rpcPort: rpcPort! });
    const n = makeNode(this.root, { id, clusterId: this.clusterId, bootstrap: false, peers, raftPort: raftPort!, rpcPort: rpcPort! }, this.opts);
    this.nodes.set(id, n);
    return n;
  }

  /** Status of one node, or null when it does not answer; `stateHash` asks for the whole-state hash too. */
  async status(id: string, opts: { stateHash?: boolean } = {}): Promise<KvStatus | null> {
    if (!this.isRunning(id)) return null;
    try {
      return await this.admin.status(this.endpoint(id), opts);
    } catch {
      return null;
    }
  }

  /** Waits until a running node reports itself leader and every other running node agrees; returns its id. */
  async waitForLeader(timeoutMs = 20_000): Promise<string> {
    const start = Date.now();
    for (;;) {
      const sts = (await Promise.all(this.running().map((id) => this.status(id)))).filter((s): s is KvStatus => s !== null);
      const leader = sts.find((s) => s.role === 'leader');
      if (leader !== undefined && sts.every((s) => s.leader === leader.id)) return leader.id;
      if (Date.now() - start > timeoutMs) throw new Error(`no leader within ${timeoutMs} ms: ${JSON.stringify(sts.map((s) => [s.id, s.role, s.leader, s.term]))}`);
      await sleep(50);
    }
  }

  /** Waits until `cond` holds for the statuses of the given (running) nodes. */
  async waitForStatus(ids: string[], cond: (sts: KvStatus[]) => boolean, timeoutMs = 30_000, what = 'condition', opts: { stateHash?: boolean } = {}): Promise<KvStatus[]> {
    const start = Date.now();
    for (;;) {
      const sts = await Promise.all(ids.map((id) => this.status(id, opts)));
      if (sts.every((s) => s !== null) && cond(sts as KvStatus[])) return sts as KvStatus[];
      if (Date.now() - start > timeoutMs) {
        throw new Error(`${what} not reached within ${timeoutMs} ms: ${JSON.stringify(sts.map((s) => s && { id: s.id, role: s.role, applied: s.applied, commit: s.commit, hash: s.stateHash }))}`);
      }
      await sleep(100);
    }
  }

  logTail(id: string, lines = 30): string {
    try {
      const text = readFileSync(this.node(id).logPath, 'utf8').trimEnd().split('\n');
      return text.slice(-lines).map((l) => `[${id}] ${l}`).join('\n');
    } catch {
      return `[${id}] (no log)`;
    }
  }

  /** Kills every node (SIGKILL) and, unless `keep`, removes the data. */
  async destroy(opts: { keep?: boolean } = {}): Promise<void> {
    await this.admin.close();
    await Promise.all(this.running().map((id) => this.kill(id, 'SIGKILL').catch(() => {})));
    if (opts.keep !== true) rmSync(this.root, { recursive: true, force: true });
  }
}

function makeNode(
  root: string,
  p: { id: string; clusterId: string; bootstrap: boolean; peers: KvServerConfig['peers']; raftPort: number; rpcPort: number },
  opts: KvClusterOptions,
): KvNode {
  const dataDir = path.join(root, p.id);
  mkdirSync(dataDir, { recursive: true });
  const config: KvServerConfig = {
    id: p.id,
    clusterId: p.clusterId,
    dataDir,
    raft: { host: '127.0.0.1', port: p.raftPort },
    rpc: { host: '127.0.0.1', port: p.rpcPort },
    peers: p.peers,
    bootstrap: p.bootstrap,
    logLevel: opts.logLevel ?? 'info',
    ...opts.nodeConfig,
  };
  const configPath = path.join(root, `${p.id}.json`);
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  return { id: p.id, config, configPath, logPath: path.join(root, `${p.id}.log`), proc: null, exited: null, starts: 0 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
