/**
 * LeaseSync's rules on their own (src/master/lease-sync.ts), members wired by direct calls: a read lease is
 * answered only once a majority knows it; a new leader learns every such lease from any majority; a member that
 * answered a newer leader refuses an older leader's announcements.
 */
import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { LeaseSync, maxAnnounceAheadMs, type LeaseClock } from '../../src/master/lease-sync.js';
import { silentLogger } from '../../src/transport/logger.js';
import { leaseClock } from '../../src/raft/effects/system-clock.js';

const ttl = 10_000;
const ids = ['a', 'b', 'c'];

interface Members { sync: Map<string, LeaseSync>; leases: Map<string, LeaseTable>; term: Map<string, number>; down: Set<string>; sent: unknown[]; restart(id: string): void }

function members(clock: LeaseClock = leaseClock): Members {
  const sent: unknown[] = [];
  const sync = new Map<string, LeaseSync>();
  const leases = new Map<string, LeaseTable>();
  const term = new Map<string, number>(ids.map((id) => [id, 1]));
  const down = new Set<string>();
  const start = (id: string, fresh: boolean): void => {
    const table = new LeaseTable(ttl);
    leases.set(id, table);
    sync.set(id, new LeaseSync({
      self: id,
      leases: table,
      send: (to, frame) => {
        if (down.has(to) || down.has(id)) return false;
        sent.push(frame);
        queueMicrotask(() => sync.get(to)!.onFrame(id, frame, clock.now()));
        return true;
      },
      voters: () => ids,
      peers: () => ids,
      term: () => term.get(id)!,
      ackTimeoutMs: () => 300,
      fresh,
      clock,
      logger: silentLogger,
    }));
  };
  for (const id of ids) start(id, true);
  // A process restart with its Raft state: lease knowledge (memory) is lost.
  return { sync, leases, term, down, sent, restart: (id) => start(id, false) };
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

/** a leads and grants a lease on 'k' while c is down: a and b acknowledged it. */
async function leaseKnownToAB(m: ReturnType<typeof members>): Promise<LeaseSync> {
  const a = m.sync.get('a')!;
  a.roleChanged('leader', leaseClock.now());
  await tick();
  m.down.add('c');
  const now = leaseClock.now();
  m.leases.get('a')!.grant('k', now);
  await a.announce(['k'], now); // a + b
  return a;
}

describe('LeaseSync', () => {
  it('an acknowledgement covers its own frame only: a member that lost an earlier frame does not count for it (simulator seed 70094)', async () => {
    const m = members();
    const a = m.sync.get('a')!;
    a.roleChanged('leader', leaseClock.now());
    await tick();
    m.down.add('c'); // a majority is a + b
    // b loses the first frame (a dropped connection), then gets the second one and acknowledges it.
    const b = m.sync.get('b')!;
    const onFrame = b.onFrame.bind(b);
    let dropNext = true;
    b.onFrame = (from, frame, now) => {
      if (dropNext && (frame as { k?: string }).k === 'ls') {
        dropNext = false;
        return true;
      }
      return onFrame(from, frame, now);
    };
    const now = leaseClock.now();
    m.leases.get('a')!.grant('first', now);
    let firstDone: string | null = null;
    const first = a.announce(['first'], now).then(() => { firstDone = 'ok'; }, (e: { code?: string }) => { firstDone = e.code ?? 'error'; });
    await tick();
    m.leases.get('a')!.grant('second', now);
    await a.announce(['second'], now); // b acknowledged the second frame
    // Cumulative acks would count b's ack of the later frame for the first one: the first read would be answered
    // while only a knows its lease.
    expect(firstDone).toBeNull();
    expect(b.known.isLeased('first', leaseClock.now())).toBe(false);
    await first;
    expect(firstDone).toBe('TIMEOUT'); // no majority ever knew it: the read fails and is retried
  });


  it('answers a lease once a majority knows it, and a new leader learns it from the other majority', async () => {
    const m = members();
    m.leases.get('a')!.resetForNewLeader(leaseClock.now());
    m.sync.get('a')!.becameLeader(leaseClock.now());
    await tick();
    expect(m.sync.get('a')!.learning).toBe(false);
    m.down.add('c'); // only b can acknowledge
    const now = leaseClock.now();
    m.leases.get('a')!.grant('k', now);
    await m.sync.get('a')!.announce(['k'], now); // resolves: a + b are a majority
    m.down.delete('c');
    m.down.add('a'); // the leader dies; c is elected with b's vote
    m.term.set('c', 2);
    m.term.set('b', 2);
    m.leases.get('c')!.resetForNewLeader(leaseClock.now());
    m.sync.get('c')!.becameLeader(leaseClock.now());
    expect(m.leases.get('c')!.isLeased('other', leaseClock.now())).toBe(true); // blanket while learning
    await tick();
    expect(m.sync.get('c')!.learning).toBe(false);
    expect(m.leases.get('c')!.isLeased('k', leaseClock.now())).toBe(true); // learned from b
    expect(m.leases.get('c')!.isLeased('other', leaseClock.now())).toBe(false); // no blanket any more
  });

  it('a leader elected again still knows the leases it granted before (it counts itself in the majority that answers)', async () => {
    // Found by the full-node simulator (seed 176): a's lease is known to a and b; a loses leadership and wins the
    // next term with c, which never heard of the lease. a and c are a majority, so a must know its own grant.
    const m = members();
    const a = await leaseKnownToAB(m);
    a.roleChanged('follower', leaseClock.now());
    m.down.delete('c');
    m.down.add('b');
    m.term.set('a', 2);
    m.term.set('c', 2);
    a.roleChanged('leader', leaseClock.now());
    await tick();
    expect(a.learning).toBe(false); // a and c answered
    expect(m.leases.get('a')!.isLeased('k', leaseClock.now())).toBe(true);
    expect(m.leases.get('a')!.isLeased('other', leaseClock.now())).toBe(false);
  });

  it('a restarted member does not vouch for the leases it may have forgotten: the new leader keeps the blanket', async () => {
    const m = members();
    const a = await leaseKnownToAB(m);
    m.restart('b'); // b forgets
    m.down.delete('c');
    m.down.add('a');
    m.term.set('b', 2);
    m.term.set('c', 2);
    const c = m.sync.get('c')!;
    c.roleChanged('leader', leaseClock.now());
    await tick();
    expect(c.learning).toBe(true); // b answered, but cannot vouch
    expect(m.leases.get('c')!.isLeased('k', leaseClock.now())).toBe(true); // the blanket
    expect(m.leases.get('c')!.isLeased('other', leaseClock.now())).toBe(true);
  });

  it('gives a deposed leader no majority: its announcement fails instead of promising a lease', async () => {
    const m = members();
    m.leases.get('a')!.resetForNewLeader(leaseClock.now());
    m.sync.get('a')!.becameLeader(leaseClock.now());
    await tick();
    // c leads term 2 and has asked b for its leases; a still believes it leads term 1.
    m.term.set('c', 2);
    m.leases.get('c')!.resetForNewLeader(leaseClock.now());
    m.sync.get('c')!.becameLeader(leaseClock.now());
    await tick();
    const now = leaseClock.now();
    m.leases.get('a')!.grant('k', now);
    await expect(m.sync.get('a')!.announce(['k'], now)).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('announces a lease ahead: a key read again within that margin costs no frame, and members protect it at least as long as the reader was promised and at most the margin longer', async () => {
    const ahead = maxAnnounceAheadMs; // ttl / 2 is larger
    const m = members();
    const a = m.sync.get('a')!;
    m.leases.get('a')!.resetForNewLeader(0);
    a.becameLeader(0);
    await tick();
    const announcements = (): number => m.sent.filter((f) => (f as { k: string }).k === 'ls').length;
    // The members run on leaseClock (timeOrigin + performance.now(): fractional ms, not Date.now()'s wall clock, which
    // may sit a fraction of a millisecond behind it), so the bounds below read that same clock.
    const t0 = leaseClock.now() - ahead - 1; // the reads below happen between t0 and now
    m.leases.get('a')!.grant('hot', t0);
    await a.announce(['hot'], t0);
    expect(announcements()).toBe(2); // one frame to each of b and c
    for (const dt of [1, ahead / 2, ahead]) {
      m.leases.get('a')!.grant('hot', t0 + dt); // each read extends the lease
      await a.announce(['hot'], t0 + dt);
    }
    expect(announcements()).toBe(2);
    m.leases.get('a')!.grant('hot', t0 + ahead + 1); // beyond the margin: announced again
    await a.announce(['hot'], t0 + ahead + 1);
    expect(announcements()).toBe(4);
    // b protects the key at least until the last read's lease ends, at most the margin longer (plus transit).
    const known = new Map(m.sync.get('b')!.known.live(leaseClock.now()));
    const until = known.get('hot')!;
    expect(until).toBeGreaterThanOrEqual(t0 + ahead + 1 + ttl);
    expect(until).toBeLessThanOrEqual(leaseClock.now() + ttl + ahead);
  });

  it('announces no more than members keep: a lease adopted from the collection does not stretch an announcement members cut short (simulator seed 77511)', async () => {
    // Time under the test's control: now() is `t`; timers are real (the 300 ms ack timeout is never reached).
    let t = 1_000_000;
    const m = members({ now: () => t, setTimeout: leaseClock.setTimeout, setImmediate: leaseClock.setImmediate });
    const a = m.sync.get('a')!;
    const table = m.leases.get('a')!;
    a.roleChanged('leader', t);
    await tick();
    m.down.add('c'); // a majority is a + b
    // a learned from its collection that 'k' is leased until nearly one announced-ahead TTL from now, and a read
    // grants it: the table says t + 10,400, the announcement would say that plus the margin.
    table.adopt('k', t + ttl + 400);
    table.grant('k', t);
    await a.announce(['k'], t);
    // Just past the margin later (so the first announcement no longer covers it if it was cut short), another read:
    // its lease runs until t + ttl.
    t += maxAnnounceAheadMs + 200;
    expect(table.grant('k', t)).toBe(t + ttl);
    await a.announce(['k'], t);
    // b (with a, the majority) must know the lease the second reader was promised. Recording the first announcement
    // as ttl + 400 + margin while b kept ttl + margin skipped the second one: b forgot the lease 200 ms before the
    // reader's ended.
    expect(m.sync.get('b')!.known.expiry('k')).toBeGreaterThanOrEqual(t + ttl);
  });

  /** 'a' elected in a fresh cluster of members(): its LeaseSync, its lease table and the time after the election. */
  async function electA(m: ReturnType<typeof members>): Promise<{ a: LeaseSync; table: LeaseTable; t0: number }> {
    const a = m.sync.get('a')!;
    const table = m.leases.get('a')!;
    table.resetForNewLeader(0);
    a.becameLeader(0);
    await tick();
    return { a, table, t0: leaseClock.now() };
  }

  it('prunes expired knowledge in slices of its budget, saying when work is left, and keeps what is still live', async () => {
    const m = members();
    const { a, table, t0 } = await electA(m);
    const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
    for (const k of keys) table.grant(k, t0);
    await a.announce(keys, t0);
    const b = m.sync.get('b')!;
    expect(b.known.size).toBe(10);
    // The leader notes what it announced on the lease entries themselves (one lookup per key read serves both).
    const noted = (): number => keys.filter((k) => (table.entry(k)?.noteUntil ?? 0) > 0).length;
    expect(noted()).toBe(10);
    expect(keys.every((k) => (table.entry(k)?.noteSeq ?? 0) > 0)).toBe(true);
    // Nothing expired yet: nothing goes.
    expect(a.prune(t0, 100)).toBe(false);
    expect(noted()).toBe(10);
    const later = t0 + ttl + maxAnnounceAheadMs + 1;
    // b forgets 4, 4, then the last 2 (and says when it is done).
    expect(b.prune(later, 4)).toBe(true);
    expect(b.known.size).toBe(6);
    expect(b.prune(later, 4)).toBe(true);
    expect(b.prune(later, 4)).toBe(false);
    expect(b.known.size).toBe(0);
    // The leader's notes go with its expired leases.
    expect(table.prune(later)).toBe(10);
    expect(noted()).toBe(0);
  });

  it('a leader that steps down forgets what it announced (its notes name frames of that leadership only)', async () => {
    const { a, table, t0 } = await electA(members());
    table.grant('k', t0);
    await a.announce(['k'], t0, true);
    expect(table.entry('k')!.noteSeq).toBeGreaterThan(0);
    a.steppedDown();
    // Its frames' seqs start again in the next leadership: a note kept across would name the wrong frame.
    expect(table.entry('k')!.noteUntil).toBe(0);
    expect(table.entry('k')!.noteSeq).toBe(0);
  });

  it('caps what a peer claims at a TTL and the margin from now', () => {
    const m = members();
    const b = m.sync.get('b')!;
    const now = leaseClock.now();
    b.onFrame('a', { k: 'ls', t: 1, seq: 1, keys: [['k', 1e12]] }, now);
    expect(new Map(b.known.live(now)).get('k')).toBe(now + ttl + maxAnnounceAheadMs);
  });

  it('a collection that cannot finish holds writes once, for maxWaitMs from its start, not again for each caller', async () => {
    const m = members();
    m.down.add('b');
    m.down.add('c'); // nobody answers: the new leader stays in its blanket
    const a = m.sync.get('a')!;
    a.roleChanged('leader', leaseClock.now());
    expect(a.learning).toBe(true);
    const t0 = leaseClock.now();
    await a.learned(100);
    expect(leaseClock.now() - t0).toBeGreaterThanOrEqual(90);
    const t1 = leaseClock.now();
    await a.learned(100); // the window is over: no second wait
    expect(leaseClock.now() - t1).toBeLessThan(50);
    expect(a.learning).toBe(true);
  });
});
