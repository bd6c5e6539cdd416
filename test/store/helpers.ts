/** In-process masters (real LevelDB, real sockets) for StoreClient tests; storage clients use the real engine. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/master/config.js';
import { MasterNode } from '../../src/master/master-node.js';
import { silentLogger } from '../../src/master/logger.js';
import { freePorts } from '../helpers/ports.js';

export interface Masters {
  root: string;
  nodes: MasterNode[];
  endpoints: string[];
  close(): Promise<void>;
}

export async function startMasters(n: number, extra: Record<string, unknown> = {}): Promise<Masters> {
  const root = mkdtempSync(path.join(tmpdir(), 'mooring-store-'));
  const ports = await freePorts(n * 3);
  const peers = Array.from({ length: n }, (_, i) => ({ id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 3]!, rpcPort: ports[i * 3 + 1]!, httpPort: ports[i * 3 + 2]! }));
  const nodes = await Promise.all(peers.map((p) => MasterNode.start(parseConfig({
    peerToken: 'test-peer-token', // peers authenticate (the only way a multi-node master starts)
    nodeId: p.id,
    dataDir: path.join(root, p.id),
    listen: { host: '127.0.0.1', raftPort: p.raftPort, rpcPort: p.rpcPort, httpPort: p.httpPort },
    peers,
    raft: { tickMs: 10 },
    ...extra,
  }), { logger: silentLogger(), http: false })));
  await waitFor(() => nodes.some((m) => m.isLeader));
  return {
    root,
    nodes,
    endpoints: peers.map((p) => `127.0.0.1:${p.rpcPort}`),
    async close() {
      await Promise.all(nodes.map((m) => m.stop()));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Deterministic bytes for (seed, length): a test can tell any two objects apart. */
export function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
