import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { listConfigFields, loadConfig } from '../../src/master/config.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('examples/', () => {
  it('master-single.yaml is a valid single-node config', () => {
    const c = loadConfig({ file: `${root}examples/master-single.yaml`, env: {} });
    expect(c.nodeId).toBe('m1');
    expect(c.join).toBe(false);
    expect(c.peers).toEqual([{ id: 'm1', host: '127.0.0.1', raftPort: 7400, rpcPort: 50051, httpPort: 9003 }]);
  });

  it('cluster-3/m{1,2,3}.yaml: same voters, each node is its own peer entry, nothing collides', () => {
    // The examples name a peer token file next to them (made by the operator, never committed): load copies
    // placed beside a generated one.
    const dir = mkdtempSync(path.join(tmpdir(), 'cluster-3-'));
    writeFileSync(path.join(dir, 'peer.token'), 'a-generated-peer-token\n');
    for (const n of ['m1', 'm2', 'm3']) copyFileSync(`${root}examples/cluster-3/${n}.yaml`, path.join(dir, `${n}.yaml`));
    const nodes = ['m1', 'm2', 'm3'].map((n) => loadConfig({ file: path.join(dir, `${n}.yaml`), env: {} }));
    rmSync(dir, { recursive: true, force: true });
    for (const c of nodes) expect(c.peerToken).toBe('a-generated-peer-token');
    const ports = new Set<number>();
    const dirs = new Set<string>();
    for (const c of nodes) {
      expect(c.peers).toEqual(nodes[0]!.peers);
      expect(c.clusterId).toBe(nodes[0]!.clusterId);
      const self = c.peers.find((p) => p.id === c.nodeId)!;
      expect(self).toBeDefined();
      expect([self.raftPort, self.rpcPort, self.httpPort]).toEqual([c.listen.raftPort, c.listen.rpcPort, c.listen.httpPort]);
      for (const p of [c.listen.raftPort, c.listen.rpcPort, c.listen.httpPort]) ports.add(p);
      dirs.add(c.dataDir);
    }
    expect(ports.size).toBe(9);
    expect(dirs.size).toBe(3);
  });
});

describe('docs/configuration.md', () => {
  it('documents every field and its environment variable', () => {
    const doc = readFileSync(`${root}docs/configuration.md`, 'utf8');
    for (const f of listConfigFields()) {
      expect(doc, f.path).toContain(`\`${f.path}\``);
      if (f.envVar) expect(doc, f.envVar).toContain(f.envVar);
    }
    for (const alias of ['default_kv_lease_ttl', 'client_ttl', 'eviction_high_watermark_ratio']) expect(doc).toContain(alias);
  });
});
