/**
 * Demotion instead of drops when a put needs room: memory is full (the watermark eviction is off), a DISK tier
 * exists, and puts keep coming. The leader turns the put's eviction candidates into demotion tasks and holds the
 * put until they freed the space: no object is dropped, every byte reads back exactly (some from DISK).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { StoreClient } from '../../src/store/index.js';
import { pattern, startMasters, type Masters } from './helpers.js';

let masters: Masters;
let dir: string;
const clients: StoreClient[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mooring-putdemote-'));
  // Watermark eviction checked once an hour: only puts can trigger eviction here.
  masters = await startMasters(3, { leaseTtlMs: 400, eviction: { highWatermark: 0.95, target: 0.9, checkIntervalMs: 3_600_000 } });
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await masters.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('eviction inside a put', () => {
  it('demotes to DISK instead of dropping when a DISK tier can take the candidates', async () => {
    const node = await StoreClient.create({
      masters: masters.endpoints,
      memory: { size: 1 << 20 },
      disk: { path: path.join(dir, 'nvme.bin'), size: 16 << 20 },
      pingIntervalMs: 100,
      stagingSlotBytes: 256 << 10,
    });
    clients.push(node);
    const writer = await StoreClient.create({ masters: masters.endpoints, stagingSlotBytes: 256 << 10, requestTimeoutMs: 5_000 });
    clients.push(writer);
    const size = 100_000;
    const n = 16; // 1.6 MB of objects into 1 MiB of DRAM
    // A new leader treats every object as leased for one lease TTL (nothing can be evicted): let that pass.
    await new Promise((r) => setTimeout(r, 600));
    for (let i = 0; i < n; i++) {
      // NO_SPACE is a legitimate answer while nothing can be evicted (a new leader's blanket lease after an election
      // on this loaded machine, a demotion still copying): retry. What must never happen is a dropped object.
      for (let attempt = 0; ; attempt++) {
        try {
          await writer.put(`p${i}`, pattern(i, size));
          break;
        } catch (e) {
          if (!(e instanceof MooringError) || e.code !== ErrorCode.NO_SPACE || attempt >= 20) throw e;
          await new Promise((r) => setTimeout(r, 300));
        }
      }
    }
    const stats = await writer.master.stats();
    expect(stats.objectCount).toBe(n);
    expect(stats.diskAllocatedBytes as number).toBeGreaterThan(0);
    expect(node.stats.demotions).toBeGreaterThan(0);
    for (let i = 0; i < n; i++) expect((await writer.get(`p${i}`)).equals(pattern(i, size)), `p${i}`).toBe(true);
  }, 60_000);
});
