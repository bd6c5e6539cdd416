/**
 * A master whose data dir was written by 0.1 (LevelDB Raft log in dataDir/raft-log) converts it to the WAL at
 * start and serves every object it had. The state store is deleted too, so the objects can only come back by
 * replaying the converted log. In-process MasterNode, real LevelDB and files in temp dirs, real sockets.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/master/config.js';
import { MasterClient } from '../../src/master/client.js';
import { MasterNode } from '../../src/master/master-node.js';
import { silentLogger } from '../../src/master/logger.js';
import { legacyBackupSuffix } from '../../src/raft/wal/open.js';
import { rewriteAsLegacyLog } from '../helpers/legacy-log.js';
import { freePorts } from '../helpers/ports.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('master: 0.1 data dir upgrade', () => {
  it('converts the LevelDB Raft log at start, replays it and serves every object', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'mooring-master-up-'));
    cleanup.push(() => rmSync(root, { recursive: true, force: true }));
    const [raftPort, rpcPort, httpPort] = await freePorts(3);
    const peer = { id: 'm1', host: '127.0.0.1', raftPort: raftPort!, rpcPort: rpcPort!, httpPort: httpPort! };
    const dataDir = path.join(root, 'm1');
    const config = parseConfig({ nodeId: 'm1', dataDir, listen: { host: '127.0.0.1', raftPort: peer.raftPort, rpcPort: peer.rpcPort, httpPort: peer.httpPort }, peers: [peer], raft: { tickMs: 10 } });
    const client = () => {
      const c = new MasterClient({ endpoints: [`127.0.0.1:${rpcPort}`], retry: { maxAttempts: 40, initialBackoffMs: 20, maxBackoffMs: 200 } });
      cleanup.push(() => c.close());
      return c;
    };

    let node = await MasterNode.start(config, { logger: silentLogger() });
    await waitFor(() => node.isLeader);
    const c = client();
    await c.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9001' });
    for (let i = 0; i < 20; i++) {
      await c.putStart(`obj-${i}`, 4096, { replicaNum: 1 });
      await c.putEnd(`obj-${i}`);
    }
    await node.stop();
    await c.close();

    const { lastIndex } = await rewriteAsLegacyLog(path.join(dataDir, 'raft-wal'), path.join(dataDir, 'raft-log'));
    expect(lastIndex).toBeGreaterThan(5);
    rmSync(path.join(dataDir, 'state'), { recursive: true });

    node = await MasterNode.start(config, { logger: silentLogger() });
    cleanup.push(() => node.stop());
    expect(existsSync(path.join(dataDir, 'raft-wal'))).toBe(true);
    expect(existsSync(path.join(dataDir, 'raft-log'))).toBe(false);
    expect(existsSync(path.join(dataDir, `raft-log${legacyBackupSuffix}`, 'CURRENT'))).toBe(true);
    await waitFor(() => node.isLeader);
    const c2 = client();
    for (let i = 0; i < 20; i++) expect(await c2.existKey(`obj-${i}`)).toBe(true);
    await c2.putStart('after-upgrade', 4096, { replicaNum: 1 });
    await c2.putEnd('after-upgrade');
    expect(await c2.existKey('after-upgrade')).toBe(true);
  }, 60_000);
});
