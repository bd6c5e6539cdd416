/**
 * The `repair:` section of the master config reaches the running leader: a single-node MasterNode started from a
 * YAML file (loadConfig, as `mooring master --config` does) hands out at most repair.maxInFlight repair tasks in
 * its ping replies; MasterNodeOptions.repair still overrides the config for embedders.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/master/config.js';
import { MasterNode, type MasterNodeOptions } from '../../src/master/master-node.js';
import { MasterClient } from '../../src/master/client.js';
import { silentLogger } from '../../src/master/logger.js';
import { defaultRepairLimits } from '../../src/master/repair.js';
import { freePorts } from '../helpers/ports.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const objects = 40;

/**
 * Starts a master from a config file holding `repairYaml`, puts `objects` objects with 2 replicas over segments of
 * clients a, b, c, unmounts c's segment, then collects the distinct keys of repair tasks a and b receive in their
 * ping replies over a few planning rounds.
 */
async function repairTasksHandedOut(repairYaml: string, opts: MasterNodeOptions = {}): Promise<{ tasks: number; underReplicated: number }> {
  const root = mkdtempSync(path.join(tmpdir(), 'mooring-repair-config-'));
  cleanup.push(() => rmSync(root, { recursive: true, force: true }));
  const [raftPort, rpcPort] = await freePorts(2);
  const file = path.join(root, 'master.yaml');
  writeFileSync(file, [
    'nodeId: m1',
    `dataDir: ${path.join(root, 'm1')}`,
    `listen: { host: 127.0.0.1, raftPort: ${raftPort}, rpcPort: ${rpcPort}, httpPort: 0 }`,
    'raft: { tickMs: 10 }',
    'log: { level: silent }',
    repairYaml,
  ].join('\n'));
  const node = await MasterNode.start(loadConfig({ file, env: {} }), { logger: silentLogger(), http: false, ...opts });
  cleanup.push(() => node.stop());
  const clients = ['a', 'b', 'c'].map((id) => {
    const c = new MasterClient({ endpoints: [`127.0.0.1:${rpcPort}`], clientId: id, retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 } });
    cleanup.push(() => c.close());
    return c;
  });
  const [a, b, c] = clients as [MasterClient, MasterClient, MasterClient];
  for (const [i, cl] of clients.entries())
    await cl.mountSegment({ id: `s${i}`, name: `s${i}`, base: 0x10000000 * (i + 1), size: 1 << 20, protocol: 'tcp', endpoint: `127.0.0.1:${9000 + i}`, zone: `z${i}` });
  for (let i = 0; i < objects; i++) {
    await a.putStart(`k${i}`, 1000, { replicaNum: 2 });
    await a.putEnd(`k${i}`);
  }
  await c.unmountSegment('s2');
  const underReplicated = [...node.masterState.objects.values()].filter((o) => o.replicas.length < 2).length;

  const keys = new Set<string>();
  const deadline = Date.now() + 10_000;
  let quietUntil = Infinity;
  // Once the first tasks appear, keep pinging for several more planning rounds (100 ms each) to catch any extra.
  while (Date.now() < Math.min(deadline, quietUntil)) {
    for (const cl of [a, b]) for (const t of (await cl.ping()).tierTasks ?? []) if (t.kind === 'repair') keys.add(t.key);
    if (keys.size > 0 && quietUntil === Infinity) quietUntil = Date.now() + 600;
    await new Promise((r) => setTimeout(r, 20));
  }
  return { tasks: keys.size, underReplicated };
}

describe('repair limits from the master config', () => {
  it('a master started from a config file with repair.maxInFlight hands out no more tasks than that', async () => {
    const r = await repairTasksHandedOut('repair:\n  maxInFlight: 3\n');
    // Enough under-replicated objects that the default limit would hand out many more.
    expect(r.underReplicated).toBeGreaterThan(defaultRepairLimits.maxInFlight);
    expect(r.tasks).toBe(3);
  }, 30_000);

  it('without a repair section the default applies; MasterNodeOptions.repair overrides the config', async () => {
    const byDefault = await repairTasksHandedOut('');
    expect(byDefault.tasks).toBe(defaultRepairLimits.maxInFlight);
    const overridden = await repairTasksHandedOut('repair:\n  maxInFlight: 3\n', { repair: { maxInFlight: 5 } });
    expect(overridden.tasks).toBe(5);
  }, 30_000);
});
