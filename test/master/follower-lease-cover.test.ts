// FollowerLeaseCover (src/master/follower-lease-cover.ts): which keys a follower may serve without asking the leader
// to lease them again. Pure bookkeeping on the caller's clock: every edge of the window is checked here.
import { describe, expect, it } from 'vitest';
import { coverMarginMs, coverRefreshShare, FollowerLeaseCover, maxClockRateRatio, maxCoverRefreshBytes, unexpectedRefreshLogIntervalMs } from '../../src/master/follower-lease-cover.js';
import { decodeKeys, encodeKeys, replicaRead, type ReplicaReadDeps } from '../../src/master/follower-reads.js';
import { announceAheadMs } from '../../src/master/lease-sync.js';
import { ErrorCode } from '../../src/errors.js';
import { errResult } from '../../src/statemachine/commands.js';
import type { CoverSlot } from '../../src/statemachine/objects.js';

describe('FollowerLeaseCover', () => {
  it('covers a granted key for the margin / maxClockRateRatio after the granting read began, then asks again', () => {
    const c = new FollowerLeaseCover(10_000);
    expect(coverMarginMs(10_000)).toBe(announceAheadMs(10_000));
    expect(c.coverMs).toBe(coverMarginMs(10_000) / maxClockRateRatio);
    expect(maxClockRateRatio).toBeGreaterThan(1.1 / 0.9); // the simulator's drift faults stay inside it
    expect(c.uncovered(['a', 'b'], 1_000, 3)).toEqual(['a', 'b']);
    c.granted(['a'], 1_000, 3);
    expect(c.uncovered(['a', 'b'], 1_000, 3)).toEqual(['b']);
    expect(c.uncovered(['b', 'a'], 1_000 + c.coverMs, 3)).toEqual(['b']); // the last instant it covers
    expect(c.uncovered(['a'], 1_000 + c.coverMs + 1, 3)).toEqual(['a']);
    expect(c.coveredKeys).toBe(2);
    expect(c.askedKeys).toBe(2 + 1 + 1 + 1);
  });

  it('refresh ahead: a sweep at coverRefreshShare (7/8) of a cover takes the keys read under it, drops the unread ones, one refresh at a time', () => {
    const off = new FollowerLeaseCover(10_000);
    off.uncovered([], 0, 1);
    off.granted(['a'], 0, 1);
    off.uncovered(['a'], 1, 1);
    expect(off.takeRefresh(off.coverMs * 0.9)).toEqual([]); // refreshAhead is off by default (no follower read lease)
    expect(off.covers('a', off.coverMs * 0.9, 1)).toBe(true);
    const c = new FollowerLeaseCover(10_000);
    c.refreshAhead = true;
    const t0 = 1_000;
    const at = (share: number): number => t0 + c.coverMs * share;
    c.uncovered([], t0, 1);
    c.granted(['a', 'b', 'cold'], t0, 1);
    const S = coverRefreshShare;
    expect(S).toBe(7 / 8);
    // Read early in the cover: that is enough to be leased again, but not before 7/8 of it.
    expect(c.uncovered(['a', 'b'], at(0.1), 1)).toEqual([]);
    expect(c.takeRefresh(at(S - 0.1))).toEqual([]);
    expect(c.takeRefresh(at(S + 0.02))).toEqual(['a', 'b']);
    expect(c.covers('cold', at(S + 0.02), 1)).toBe(false); // never read under its cover: dropped, a read asks for it
    expect(c.covers('a', at(S + 0.02), 1)).toBe(true); // still covered while its refresh is in flight
    c.granted(['c'], at(0.05), 1);
    c.uncovered(['c'], at(0.1), 1);
    expect(c.takeRefresh(at(S + 0.06))).toEqual([]); // one in flight at a time
    // The refresh of a and b ends: a granted again (covering reads that begin up to coverMs after the refresh
    // began), b's grant failed. The next sweep takes c and drops b (not granted again, not read since).
    c.granted(['a'], at(S + 0.02), 1);
    c.refreshDone();
    expect(c.takeRefresh(at(S + 0.06))).toEqual(['c']);
    expect(c.covers('b', at(S + 0.06), 1)).toBe(false);
    expect(c.covers('a', at(1.8), 1)).toBe(true);
    c.refreshDone();
    expect(c.takeRefresh(at(1.8))).toEqual([]); // a: not read since its new grant
    expect(c.refreshedKeys).toBe(3);
  });

  it('sweeps at most once per coverMs / 32 unless the last one left keys waiting', () => {
    const c = new FollowerLeaseCover(10_000);
    c.refreshAhead = true;
    c.uncovered([], 0, 1);
    c.granted(['a'], 0, 1);
    expect(c.takeRefresh(c.coverMs * 0.5)).toEqual([]); // a sweep: nothing 7/8 through yet
    c.granted(['b'], 1, 1);
    c.uncovered(['a', 'b'], c.coverMs * 0.5, 1);
    const t = c.coverMs * (coverRefreshShare + 0.01);
    expect(c.takeRefresh(t)).toEqual(['a', 'b']);
    c.refreshDone();
    c.granted(['x'], 2, 1);
    c.uncovered(['x'], 3, 1);
    expect(c.takeRefresh(t + c.coverMs / 32 - 1)).toEqual([]); // too soon after the last sweep
    expect(c.takeRefresh(t + c.coverMs / 32)).toEqual(['x']);
  });

  it('a refresh sends at most maxCoverRefreshBytes of keys; the rest are taken by the next sweep at once', () => {
    const c = new FollowerLeaseCover(10_000);
    c.refreshAhead = true;
    c.uncovered([], 0, 1);
    const long = Array.from({ length: 100 }, (_, i) => `${i}:${'x'.repeat(2_000)}`);
    c.granted(long, 0, 1);
    c.uncovered(long, 1, 1);
    const now = c.coverMs * (coverRefreshShare + 0.02);
    const first = c.takeRefresh(now);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(long.length);
    expect(first.reduce((a, k) => a + 3 * k.length, 0)).toBeLessThanOrEqual(maxCoverRefreshBytes);
    c.refreshDone();
    // The first batch, not granted again (its refresh failed) and not read since: dropped; the next batch follows.
    expect(c.takeRefresh(now)).toEqual(long.slice(first.length, 2 * first.length));
  });

  it('a newer grant extends the cover; an older one does not shorten it', () => {
    const c = new FollowerLeaseCover(10_000);
    c.uncovered([], 0, 1);
    c.granted(['a'], 100, 1);
    c.granted(['a'], 900, 1);
    c.granted(['a'], 500, 1);
    expect(c.covers('a', 900 + c.coverMs, 1)).toBe(true);
    expect(c.covers('a', 901 + c.coverMs, 1)).toBe(false);
  });

  it('a leader change ends every cover, and a grant confirmed in an older term is not kept', () => {
    const c = new FollowerLeaseCover(10_000);
    c.uncovered([], 0, 4);
    c.granted(['a', 'b'], 0, 4);
    expect(c.covers('a', 10, 4)).toBe(true);
    expect(c.covers('a', 10, 5)).toBe(false);
    expect(c.uncovered(['a', 'b'], 10, 5)).toEqual(['a', 'b']);
    expect(c.size).toBe(0);
    c.granted(['a'], 10, 4); // a read begun in term 4, answered after this follower saw term 5
    expect(c.covers('a', 11, 5)).toBe(false);
    expect(c.size).toBe(0);
  });

  it('a clock that reads earlier than the grant counts as uncovered', () => {
    const c = new FollowerLeaseCover(10_000);
    c.uncovered([], 0, 1);
    c.granted(['a'], 5_000, 1);
    expect(c.covers('a', 4_999, 1)).toBe(false);
  });

  it('drops ended covers as reads go by, and keeps at most maxKeys', () => {
    const c = new FollowerLeaseCover(1_000, undefined, 3);
    c.uncovered([], 0, 1);
    c.granted(['a', 'b', 'c', 'd'], 0, 1); // d: over the limit, not kept
    expect(c.size).toBe(3);
    expect(c.uncovered(['d'], 1, 1)).toEqual(['d']);
    c.granted(['a'], 200, 1); // re-granted later: kept past the others' end
    c.uncovered([], c.coverMs + 1, 1);
    expect(c.size).toBe(1);
    expect(c.covers('a', c.coverMs + 1, 1)).toBe(true);
    expect(() => new FollowerLeaseCover(0)).toThrow(RangeError);
  });

  describe('covers kept on object records (their slot)', () => {
    /** A key's object record as the state holds it: only its slot matters here. */
    /** Object records as the state holds them (only their slot matters here), and a cover over them. */
    const records = (): { put(k: string): CoverSlot; cover(term?: number): FollowerLeaseCover } => {
      const slots = new Map<string, CoverSlot>();
      return {
        put: (k) => {
          const r: CoverSlot = { cover: null };
          slots.set(k, r);
          return r;
        },
        // Its term begun at time 0.
        cover: (term = 1) => {
          const c = new FollowerLeaseCover(10_000, (k) => slots.get(k));
          c.uncovered([], 0, term);
          return c;
        },
      };
    };

    it('a grant of a key with an object fills its slot; reads of it are covered through the slot', () => {
      const st = records();
      const rec = st.put('a');
      const c = st.cover();
      expect(c.uncovered(['a'], 0, 1)).toEqual(['a']);
      c.granted(['a'], 0, 1);
      expect(rec.cover).not.toBeNull();
      expect(c.uncovered(['a'], 10, 1)).toEqual([]);
      expect(c.covers('a', c.coverMs, 1)).toBe(true);
      expect(c.covers('a', c.coverMs + 1, 1)).toBe(false);
      // A slot holding anything but this cover's entry covers nothing.
      rec.cover = { start: 0, read: false, term: 1 };
      expect(c.uncovered(['a'], 10, 1)).toEqual(['a']);
    });

    it('a key whose object was removed and created again is asked for again, and its old record lets go of the cover', () => {
      const st = records();
      const old = st.put('a');
      const c = st.cover();
      c.granted(['a'], 0, 1);
      const fresh = st.put('a'); // the object was removed and put again: a new record
      expect(c.uncovered(['a'], 10, 1)).toEqual(['a']);
      c.granted(['a'], 10, 1);
      expect(fresh.cover).not.toBeNull();
      expect(old.cover).toBeNull();
      expect(c.size).toBe(1);
      expect(c.uncovered(['a'], 20, 1)).toEqual([]);
    });

    it('a key with no object is covered by key; once its object exists, its reads ask again', () => {
      const st = records();
      const c = st.cover();
      c.granted(['missing'], 0, 1);
      expect(c.uncovered(['missing'], 10, 1)).toEqual([]);
      const rec = st.put('missing');
      expect(c.uncovered(['missing'], 20, 1)).toEqual(['missing']);
      c.granted(['missing'], 20, 1);
      expect(rec.cover).not.toBeNull();
      expect(c.size).toBe(1); // the by-key entry was replaced
      expect(c.uncovered(['missing'], 30, 1)).toEqual([]);
    });

    it('a leader change ends the covers still held in slots', () => {
      const st = records();
      const rec = st.put('a');
      const c = st.cover(4);
      c.granted(['a'], 0, 4);
      expect(c.uncovered(['a'], 10, 5)).toEqual(['a']);
      expect(rec.cover).not.toBeNull(); // still referenced, no longer valid
      expect(c.covers('a', 10, 5)).toBe(false);
      c.granted(['a'], 10, 5);
      expect(c.covers('a', 11, 5)).toBe(true);
    });

    it('covers dropped by a sweep or by their end leave their slots', () => {
      const st = records();
      const cold = st.put('cold');
      const ended = st.put('ended');
      const c = st.cover();
      c.refreshAhead = true;
      c.granted(['ended'], 0, 1);
      c.granted(['cold'], c.coverMs * 0.2, 1);
      // 'ended' has ended and 'cold' is 7/8 through its cover, never read under it: the read prunes the first, the
      // sweep drops the second.
      const now = c.coverMs * (0.2 + coverRefreshShare + 0.01);
      c.uncovered([], now, 1);
      expect(ended.cover).toBeNull();
      expect(c.takeRefresh(now)).toEqual([]);
      expect(cold.cover).toBeNull();
      expect(c.size).toBe(0);
    });
  });

  it('a background refresh that fails unexpectedly (a bug) is counted and logged, at most one line per interval; the read itself is answered', async () => {
    const cover = new FollowerLeaseCover(10_000);
    cover.refreshAhead = true;
    let now = 1_000;
    const errors: unknown[] = [];
    const warns: unknown[] = [];
    // A follower of three voters whose ReadIndex round answers, except for the refresh of 'hot', which throws what
    // no read path throws (a TypeError).
    const raft = {
      isLeader: false,
      currentTerm: 1,
      leaderId: 'm1',
      members: () => ({ voters: ['m1', 'm2', 'm3'] }),
      peerAddress: () => undefined,
      read: async (o?: { payload?: Uint8Array }) => {
        if (o?.payload !== undefined && decodeKeys(o.payload).includes('hot') && decodeKeys(o.payload).length === 1 && refreshing) throw new TypeError('boom');
        return encodeKeys([]);
      },
    };
    let refreshing = false;
    const d = {
      raft,
      state: { batchGetReplicaList: (keys: readonly string[]) => keys.map(() => errResult(ErrorCode.OBJECT_NOT_FOUND, 'none')) },
      leases: undefined,
      pending: undefined,
      leaseSync: { announce: async () => {}, recordServed: () => {} },
      whileLeading: <T>(p: Promise<T>) => p,
      now: () => now,
      clock: { now: () => now, setTimeout: () => ({ cancel() {} }) },
      leaseTtlMs: 10_000,
      cover,
      logger: { debug() {}, info() {}, warn: (...a: unknown[]) => warns.push(a), error: (...a: unknown[]) => errors.push(a) },
    } as unknown as ReplicaReadDeps;
    cover.uncovered(['hot'], now, 1); // a first read in term 1 asks for 'hot'
    const readThreeQuartersIn = async (): Promise<void> => {
      cover.granted(['hot'], now, 1); // its grant (or the last refresh's) covers it
      now += cover.coverMs * 0.9; // covered, 7/8 through, read under it: this read starts its refresh
      refreshing = true;
      const rs = await replicaRead(d, ['hot']);
      expect(rs[0]!.ok).toBe(false); // answered from the state, whatever the refresh did
      await new Promise((r) => setImmediate(r));
      refreshing = false;
    };
    await readThreeQuartersIn();
    expect(cover.unexpectedRefreshFailures).toBe(1);
    expect(errors).toHaveLength(1);
    await readThreeQuartersIn();
    expect(cover.unexpectedRefreshFailures).toBe(2);
    expect(errors).toHaveLength(1); // within the interval: counted, not logged
    now += unexpectedRefreshLogIntervalMs;
    await readThreeQuartersIn();
    expect(errors).toHaveLength(2);
    expect(warns).toHaveLength(0);
  });
});
