/**
 * Issue 11 on three real `mooring master` processes: hostile input on the peer (Raft) port.
 * - The reported crash: after a handshake, 40 snapshot stream starts with 2 MiB chunks, superseding starts and
 *   out-of-order chunks, on one connection per node. Every node must stay up and the cluster keep serving.
 * Needs `npm run build:ts` first (children run dist/).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { RawPeer, sleep } from '../helpers/raw-peer.js';

let cluster: LocalCluster;
let client: MasterClient;
let segments = 0;

beforeAll(async () => {
  cluster = await LocalCluster.create({
    extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 } },
    logLevel: 'warn',
  });
  await cluster.start();
  client = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, requestTimeoutMs: 2_000, retry: { maxAttempts: 30, initialBackoffMs: 25, maxBackoffMs: 300 } });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await cluster?.destroy();
});

/** Every process alive, and a replicated write commits. */
async function stillServing(): Promise<void> {
  for (const n of cluster.nodes) expect(n.proc, `${n.id} exited (${n.lastExit}): ${cluster.tail(n.id)}`).not.toBeNull();
  const id = `seg-${++segments}`;
  await client.mountSegment({ id, name: id, base: segments * (1 << 24), size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9' });
}

/** Another member's id, so the frames pass authentication and reach the snapshot receiver. */
const otherMember = (id: string): string => cluster.nodes.find((n) => n.id !== id)!.id;

describe('hostile snapshot streams on the peer port', () => {
  it('40 stream starts with 2 MiB chunks, superseding starts and out-of-order chunks leave every node up', async () => {
    const chunk = new Uint8Array(2 * 1024 * 1024).fill(0xab);
    const peers = await Promise.all(cluster.nodes.map((n) => RawPeer.connect(n.ports.raft, cluster.clusterId, otherMember(n.id))));
    for (const p of peers) expect(p.reply).toMatchObject({ magic: 'mooring' });
    await Promise.all(
      peers.map(async (p) => {
        for (let i = 0; i < 40; i++) {
          const sid = 1_000 + i;
          await p.send({ k: 'sc', sid, seq: 0, data: chunk });
          if (i % 3 === 1) await p.send({ k: 'sc', sid, seq: 5, data: chunk }); // out of order
          if (i % 3 === 2) await p.send({ k: 'sc', sid, seq: 0, data: chunk }, { k: 'sc', sid, seq: 1, data: chunk }); // same start again
        }
        // A second stream start while the last one is open, then a chunk of the superseded stream.
        await p.send({ k: 'sc', sid: 5_000, seq: 0, data: chunk }, { k: 'sc', sid: 1_039, seq: 1, data: chunk });
      }),
    );
    await sleep(2_000); // let the staged writes and aborts play out
    for (const p of peers) p.destroy();
    await stillServing();
  }, 120_000);
});
