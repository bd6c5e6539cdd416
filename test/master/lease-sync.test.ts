/**
 * LeaseSync's rules on their own (src/master/lease-sync.ts), members wired by direct calls: a read lease is
 * answered only once a majority knows it; a new leader learns every such lease from any majority; a member that
 * answered a newer leader refuses an older leader's announcements.
 */
import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { LeaseSync } from '../../src/master/lease-sync.js';
import { silentLogger } from '../../src/transport/logger.js';

const ttl = 10_000;
const ids = ['a', 'b', 'c'];

function members(): { sync: Map<string, LeaseSync>; leases: Map<string, LeaseTable>; term: Map<string, number>; down: Set<string> } {
  const sync = new Map<string, LeaseSync>();
  const leases = new Map<string, LeaseTable>();
  const term = new Map<string, number>(ids.map((id) => [id, 1]));
  const down = new Set<string>();
  for (const id of ids) {
    const table = new LeaseTable(ttl);
    leases.set(id, table);
    sync.set(id, new LeaseSync({
      self: id,
      leases: table,
      send: (to, frame) => {
        if (down.has(to) || down.has(id)) return false;
        queueMicrotask(() => sync.get(to)!.onFrame(id, frame, Date.now()));
        return true;
      },
      voters: () => ids,
      peers: () => ids,
      term: () => term.get(id)!,
      ackTimeoutMs: () => 300,
      logger: silentLogger,
    }));
  }
  return { sync, leases, term, down };
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

describe('LeaseSync', () => {
  it('answers a lease once a majority knows it, and a new leader learns it from the other majority', async () => {
    const m = members();
    m.leases.get('a')!.resetForNewLeader(Date.now());
    m.sync.get('a')!.becameLeader(Date.now());
    await tick();
    expect(m.sync.get('a')!.learning).toBe(false);
    m.down.add('c'); // only b can acknowledge
    const now = Date.now();
    m.leases.get('a')!.grant('k', now);
    await m.sync.get('a')!.announce(['k'], now); // resolves: a + b are a majority
    m.down.delete('c');
    m.down.add('a'); // the leader dies; c is elected with b's vote
    m.term.set('c', 2);
    m.term.set('b', 2);
    m.leases.get('c')!.resetForNewLeader(Date.now());
    m.sync.get('c')!.becameLeader(Date.now());
    expect(m.leases.get('c')!.isLeased('other', Date.now())).toBe(true); // blanket while learning
    await tick();
    expect(m.sync.get('c')!.learning).toBe(false);
    expect(m.leases.get('c')!.isLeased('k', Date.now())).toBe(true); // learned from b
    expect(m.leases.get('c')!.isLeased('other', Date.now())).toBe(false); // no blanket any more
  });

  it('gives a deposed leader no majority: its announcement fails instead of promising a lease', async () => {
    const m = members();
    m.leases.get('a')!.resetForNewLeader(Date.now());
    m.sync.get('a')!.becameLeader(Date.now());
    await tick();
    // c leads term 2 and has asked b for its leases; a still believes it leads term 1.
    m.term.set('c', 2);
    m.leases.get('c')!.resetForNewLeader(Date.now());
    m.sync.get('c')!.becameLeader(Date.now());
    await tick();
    const now = Date.now();
    m.leases.get('a')!.grant('k', now);
    await expect(m.sync.get('a')!.announce(['k'], now)).rejects.toMatchObject({ code: 'TIMEOUT' });
  });
});
