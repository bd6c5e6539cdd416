/**
 * In-process master clusters for tests: real MasterNodes on 127.0.0.1 ports, their data in a temp dir, peers
 * authenticated with a test token, everything stopped and removed after each test.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { parseConfig } from '../../src/master/config.js';
import { MasterNode } from '../../src/master/master-node.js';
import { silentLogger } from '../../src/master/logger.js';
import { freePorts } from './ports.js';

export type Cleanup = Array<() => Promise<void> | void>;

/** A cleanup list run (last registered first) after each test of the calling file. */
export function cleanupAfterEach(): Cleanup {
  const cleanup: Cleanup = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  return cleanup;
}

export async function waitFor(cond: () => boolean, timeoutMs = 10_000, pollMs = 5): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export interface MastersOptions {
  /** Temp dir prefix, e.g. 'mooring-hints-'. */
  prefix: string;
  /** Config fields on top of the cluster's own (raft timers, lease TTL, …). */
  config?: Record<string, unknown>;
  count?: number;
}

/** Starts `count` (3) masters of one cluster and resolves once a leader is elected; stopped after the test. */
export async function startMasters(cleanup: Cleanup, opts: MastersOptions): Promise<MasterNode[]> {
  const n = opts.count ?? 3;
  const root = mkdtempSync(path.join(tmpdir(), opts.prefix));
  cleanup.push(() => rmSync(root, { recursive: true, force: true }));
  const ports = await freePorts(n * 3);
  const peers = Array.from({ length: n }, (_, i) => ({ id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 3]!, rpcPort: ports[i * 3 + 1]!, httpPort: ports[i * 3 + 2]! }));
  const nodes = await Promise.all(peers.map((p) => MasterNode.start(parseConfig({
    peerToken: 'test-peer-token', // peers authenticate (the only way a multi-node master starts)
    nodeId: p.id, dataDir: path.join(root, p.id),
    listen: { host: '127.0.0.1', raftPort: p.raftPort, rpcPort: p.rpcPort, httpPort: p.httpPort },
    peers,
    ...opts.config,
  }), { logger: silentLogger(), http: false })));
  cleanup.push(async () => { await Promise.all(nodes.map((m) => m.stop())); });
  await waitFor(() => nodes.some((m) => m.isLeader));
  return nodes;
}
