/** A random command log generator shared by the determinism, persistence and exactly-once tests. */
import fc from 'fast-check';
import type { Command, PutOptions, SegmentSpec } from '../../src/statemachine/commands.js';

export interface LogEntry {
  timeMs: number;
  command: Command;
}

const clients = ['c1', 'c2', 'c3'];
const keyPool = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'p/a', 'p/b'];
const segPool = ['sA', 'sB', 'sC', 'sD', 'dX'];

const client = fc.constantFrom(...clients);
const key = fc.constantFrom(...keyPool);
const segId = fc.constantFrom(...segPool);
const putOpts: fc.Arbitrary<PutOptions> = fc.record(
  {
    key,
    size: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 1, max: 20_000 })),
    replicaNum: fc.integer({ min: 1, max: 3 }),
    softPin: fc.boolean(),
    hardPin: fc.boolean(),
    preferredSegments: fc.array(segId, { maxLength: 2 }),
  },
  { requiredKeys: ['key', 'size', 'replicaNum'] },
);

function spec(id: string, big: boolean): SegmentSpec {
  return {
    id,
    name: id,
    base: 0,
    size: big ? 64 * 1024 : 24 * 1024,
    protocol: 'tcp',
    endpoint: `${id}:1`,
    zone: `z${id.charCodeAt(1) % 2}`,
    tier: id.startsWith('d') ? 'DISK' : 'DRAM',
  };
}

type Step = { dt: number; make: (owner: (seg: string) => string) => Command | Command[] };

const step: fc.Arbitrary<Step> = fc.record({
  dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3000 })),
  make: fc.oneof(
    { weight: 2, arbitrary: fc.tuple(segId, fc.boolean()).map(([id, big]) => (o: (s: string) => string) => ({ type: 'MountSegment', clientId: o(id), segment: spec(id, big) }) as Command) },
    { weight: 1, arbitrary: fc.tuple(segId, fc.boolean()).map(([id, g]) => (o: (s: string) => string) => ({ type: 'UnmountSegment', clientId: o(id), segmentId: id, graceful: g }) as Command) },
    { weight: 6, arbitrary: fc.tuple(client, putOpts).map(([c, p]) => () => ({ type: 'PutStart', clientId: c, ...p }) as Command) },
    { weight: 2, arbitrary: fc.tuple(client, putOpts).map(([c, p]) => () => ({ type: 'UpsertStart', clientId: c, ...p }) as Command) },
    { weight: 6, arbitrary: fc.tuple(client, putOpts, fc.boolean()).map(([c, p, up]) => () => [{ type: up ? 'UpsertStart' : 'PutStart', clientId: c, ...p }, { type: up ? 'UpsertEnd' : 'PutEnd', clientId: c, key: p.key }] as Command[]) },
    { weight: 2, arbitrary: fc.tuple(client, fc.uniqueArray(putOpts, { selector: (p) => p.key, maxLength: 4, minLength: 1 })).map(([c, items]) => () => ({ type: 'BatchPutStart', clientId: c, items }) as Command) },
    { weight: 6, arbitrary: fc.tuple(client, key).map(([c, k]) => () => ({ type: 'PutEnd', clientId: c, key: k }) as Command) },
    { weight: 2, arbitrary: fc.tuple(client, fc.uniqueArray(key, { minLength: 1, maxLength: 4 })).map(([c, keys]) => () => ({ type: 'BatchPutEnd', clientId: c, keys }) as Command) },
    { weight: 1, arbitrary: fc.tuple(client, key).map(([c, k]) => () => ({ type: 'PutRevoke', clientId: c, key: k }) as Command) },
    { weight: 2, arbitrary: fc.tuple(client, key, fc.boolean()).map(([c, k, f]) => () => ({ type: 'Remove', clientId: c, key: k, force: f }) as Command) },
    { weight: 1, arbitrary: fc.tuple(client, fc.boolean()).map(([c, f]) => () => ({ type: 'RemoveByPrefix', clientId: c, prefix: 'p/', force: f }) as Command) },
    { weight: 1, arbitrary: fc.tuple(client, key).map(([c, k]) => () => ({ type: 'OffloadStart', clientId: c, key: k }) as Command) },
    { weight: 1, arbitrary: fc.tuple(client, key).map(([c, k]) => () => ({ type: 'OffloadEnd', clientId: c, key: k }) as Command) },
    { weight: 1, arbitrary: fc.tuple(segId, fc.constantFrom('ACTIVE', 'MAINTENANCE', 'DRAINING') as fc.Arbitrary<'ACTIVE'>).map(([id, st]) => (o: (s: string) => string) => ({ type: 'SetNodeStatus', clientId: 'op', nodeId: o(id), status: st }) as Command) },
    { weight: 1, arbitrary: fc.uniqueArray(fc.constantFrom(...clients, 'n-sA', 'n-sB', 'n-sC', 'n-sD', 'n-dX'), { minLength: 1, maxLength: 3 }).map((ids) => () => ({ type: 'ExpireClients', clientIds: ids, clientTtlMs: 5000 }) as Command) },
    { weight: 1, arbitrary: fc.uniqueArray(key, { minLength: 1, maxLength: 4 }).map((keys) => () => ({ type: 'ReclaimPuts', keys, putTimeoutMs: 4000 }) as Command) },
    { weight: 1, arbitrary: fc.array(fc.record({ key, createdIndex: fc.integer({ min: 0, max: 60 }) }), { maxLength: 4 }).map((items) => () => ({ type: 'Evict', items }) as Command) },
    { weight: 1, arbitrary: fc.uniqueArray(segId, { minLength: 1, maxLength: 3 }).map((ids) => () => ({ type: 'DrainSegments', segmentIds: ids, skipKeys: ['k0'] }) as Command) },
    // A bounded drain (refused before the state version is 2) and the version change itself.
    { weight: 1, arbitrary: fc.tuple(fc.uniqueArray(segId, { minLength: 1, maxLength: 3 }), fc.uniqueArray(key, { minLength: 1, maxLength: 4 })).map(([ids, keys]) => () => ({ type: 'DrainSegments', segmentIds: ids, skipKeys: ['k1'], keys }) as Command) },
    { weight: 1, arbitrary: fc.constant(() => ({ type: 'SetStateVersion', version: 2 }) as Command) },
    // Sessions (refused before the state version is 3): a client opens (or reopens, with another nonce) its session.
    { weight: 1, arbitrary: fc.constant(() => ({ type: 'SetStateVersion', version: 3 }) as Command) },
    { weight: 1, arbitrary: fc.tuple(client, fc.constantFrom('a', 'b')).map(([c, nonce]) => () => ({ type: 'OpenSession', clientId: c, nonce }) as Command) },
  ),
});

/** Random logs: client writes get increasing per-client seqs; some are retried (same seq) later on. */
export const logArb: fc.Arbitrary<LogEntry[]> = fc
  .tuple(fc.array(step, { minLength: 1, maxLength: 120, size: 'medium' }), fc.array(fc.nat(), { maxLength: 30 }))
  .map(([steps, retries]) => {
    const seqs = new Map<string, number>();
    const owner = (seg: string): string => `n-${seg}`;
    const out: LogEntry[] = [];
    let t = 1_000_000;
    const sent: Command[] = [];
    let r = 0;
    // Most logs start with segments mounted, so that puts mostly succeed and later steps have objects to act on.
    for (const id of segPool) out.push({ timeMs: t, command: { type: 'MountSegment', clientId: owner(id), segment: spec(id, id !== 'sD') } });
    for (const s of steps) {
      t += s.dt;
      const made = s.make(owner);
      for (const one of Array.isArray(made) ? made : [made]) {
        const cmd = one as Command & { clientId?: string; seq?: number };
        if (cmd.clientId !== undefined) {
          const next = (seqs.get(cmd.clientId) ?? 0) + 1;
          seqs.set(cmd.clientId, next);
          cmd.seq = next;
          sent.push(cmd);
        }
        out.push({ timeMs: t, command: cmd });
      }
      // Now and then, retry a recent write (as a client would after a timeout or failover).
      if (r < retries.length && retries[r]! % 3 === 0 && sent.length > 0) {
        const pick = sent[Math.max(0, sent.length - 1 - (retries[r]! % 8))]!;
        out.push({ timeMs: t, command: structuredClone(pick) });
      }
      r++;
    }
    return out;
  });
