/**
 * Backup files and restore on in-process masters (real LevelDB, real sockets): a backup taken while writes keep
 * coming is one image (its object count matches the restored state, which is at the header's index), and restore
 * refuses a damaged or truncated file and a non-empty data dir without writing anything.
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { parseConfig } from '../../src/master/config.js';
import { restoreDataDir } from '../../src/master/backup-restore.js';
import { peerClusterId, readIdentity } from '../../src/master/backup-format.js';
import { MasterState } from '../../src/statemachine/master-state.js';
import { startMasters, type Masters } from '../store/helpers.js';

let masters: Masters;
let client: MasterClient;
let file: string;
let header: { index: number; objectCount: number };

function configFor(dataDir: string) {
  return parseConfig({
    nodeId: 'r1', dataDir, listen: { host: '127.0.0.1', raftPort: 1, rpcPort: 2, httpPort: 0 },
    peers: [{ id: 'r1', host: '127.0.0.1', raftPort: 1, rpcPort: 2 }, { id: 'r2', host: '127.0.0.1', raftPort: 3, rpcPort: 4 }, { id: 'r3', host: '127.0.0.1', raftPort: 5, rpcPort: 6 }],
  });
}

beforeAll(async () => {
  masters = await startMasters(3);
  client = new MasterClient({ endpoints: masters.endpoints, retry: { maxAttempts: 10, initialBackoffMs: 20, maxBackoffMs: 200 } });
  await client.mountSegment({ id: 'seg-1', name: 'seg-1', base: 0, size: 64 << 20, protocol: 'tcp', endpoint: '127.0.0.1:1' });
  for (let i = 0; i < 200; i++) {
    await client.putStart(`k${i}`, 100 + i);
    await client.putEnd(`k${i}`);
  }
  // Writes keep coming while the backup streams.
  let stop = false;
  const load = (async () => {
    for (let i = 200; !stop; i++) {
      await client.putStart(`k${i}`, 100);
      await client.putEnd(`k${i}`);
    }
  })();
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (b: Buffer) => parts.push(b));
  const r = await client.backup(out);
  stop = true;
  await load;
  header = r.header;
  file = path.join(masters.root, 'b.mbak');
  writeFileSync(file, Buffer.concat(parts));
}, 60_000);

afterAll(async () => {
  await client?.close();
  await masters?.close();
});

describe('backup and restore', () => {
  it('restores one image at the header index with a new identity', async () => {
    expect(header.objectCount).toBeGreaterThanOrEqual(200);
    const dir = path.join(masters.root, 'restored');
    const r = await restoreDataDir({ file, config: configFor(dir) });
    expect(r.index).toBe(header.index);
    expect(r.objectCount).toBe(header.objectCount);
    const st = await MasterState.open(path.join(dir, 'state'));
    try {
      expect(st.objects.size).toBe(header.objectCount);
      for (let i = 0; i < 200; i++) expect(st.existKey(`k${i}`)).toBe(true);
    } finally {
      await st.close();
    }
    expect(readIdentity(dir)?.clusterUid).toBe(r.clusterUid);
    expect(peerClusterId(dir, 'mooring')).toBe(`mooring/${r.clusterUid}`);
    expect(() => peerClusterId(dir, 'other')).toThrow(/restored for cluster/);
    // Same file, same membership: every member derives the same identity.
    const r2 = await restoreDataDir({ file, config: configFor(path.join(masters.root, 'restored-2')) });
    expect(r2.clusterUid).toBe(r.clusterUid);
  });

  it('refuses a damaged or truncated file and leaves no data dir', async () => {
    const bytes = readFileSync(file);
    const damaged = Buffer.from(bytes);
    damaged[Math.floor(damaged.length / 2)]! ^= 0x40;
    const bad = path.join(masters.root, 'damaged.mbak');
    writeFileSync(bad, damaged);
    const dir = path.join(masters.root, 'from-damaged');
    await expect(restoreDataDir({ file: bad, config: configFor(dir) })).rejects.toMatchObject({ code: ErrorCode.CHECKSUM_MISMATCH });
    writeFileSync(bad, bytes.subarray(0, bytes.length - 100));
    await expect(restoreDataDir({ file: bad, config: configFor(dir) })).rejects.toMatchObject({ code: ErrorCode.CHECKSUM_MISMATCH });
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(`${dir}.restoring`)).toBe(false);
  });

  it('refuses a non-empty data dir', async () => {
    const dir = path.join(masters.root, 'busy');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'something'), 'x');
    await expect(restoreDataDir({ file, config: configFor(dir) })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    expect(readdirSync(dir)).toEqual(['something']);
  });
});
