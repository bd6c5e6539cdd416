import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { decodeConfChange, encodeConfChange } from '../../src/raft/core/confchange.js';
import type { Message } from '../../src/raft/core/types.js';
import { validateMessage } from '../../src/raft/core/validate.js';
import { enc, Net } from './core-harness.js';

const packr = new Packr({ useRecords: false });

function malformed(x: unknown): boolean {
  try {
    validateMessage(x);
    return false;
  } catch (e) {
    return e instanceof MooringError && e.code === ErrorCode.MALFORMED_FRAME;
  }
}

describe('validateMessage', () => {
  it('accepts every message the core produces, also after a msgpackr round trip', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.proposeStr('a', 'x');
    net.core('b').readIndex(enc('r'));
    net.stabilize();
    net.core('a').transferLeadership('c');
    net.stabilize();
    expect(net.log.length).toBeGreaterThan(10);
    const types = new Set<string>();
    for (const m of net.log) {
      const back = validateMessage(packr.unpack(packr.pack(m)));
      expect(back.type).toBe(m.type);
      expect(back.term).toBe(m.term);
      types.add(m.type);
    }
    expect(types.size).toBeGreaterThanOrEqual(8);
  });

  it('rejects garbage with MALFORMED_FRAME', () => {
    const good: Message = { type: 'app', from: 'a', to: 'b', term: 1, index: 0, logTerm: 0, commit: 0, entries: [] };
    const bad: unknown[] = [
      null,
      undefined,
      42,
      'app',
      [],
      {},
      { ...good, type: 'nope' },
      { ...good, from: '' },
      { ...good, from: 7 },
      { ...good, to: 'x'.repeat(10_000) },
      { ...good, term: -1 },
      { ...good, term: 1.5 },
      { ...good, term: Number.MAX_SAFE_INTEGER + 2 },
      { ...good, term: '1' },
      { ...good, index: undefined },
      { ...good, commit: undefined },
      { ...good, entries: 'x' },
      { ...good, entries: [{ term: 1, index: 2, type: 'normal', data: new Uint8Array(0) }] }, // not index+1
      { ...good, entries: [{ term: 2, index: 1, type: 'normal', data: new Uint8Array(0) }] }, // future term
      { ...good, entries: [{ term: 1, index: 1, type: 'weird', data: new Uint8Array(0) }] },
      { ...good, entries: [{ term: 1, index: 1, type: 'normal', data: 'str' }] },
      { ...good, reject: 'yes' },
      { ...good, context: [1, 2] },
      { type: 'vote', from: 'a', to: 'b', term: 1 },
      { type: 'snap', from: 'a', to: 'b', term: 1 },
      { type: 'snap', from: 'a', to: 'b', term: 1, snapshot: { metadata: { index: 1, term: 1, confState: {} }, data: new Uint8Array(0) } },
      { type: 'readIndexResp', from: 'a', to: 'b', term: 1 },
    ];
    for (const x of bad) expect(malformed(x), JSON.stringify(x, (_k, v) => (typeof v === 'bigint' ? String(v) : v))).toBe(true);
    expect(malformed(good)).toBe(false);
  });

  it('property: arbitrary values never crash validation, and whatever passes never crashes step()', () => {
    const ids = fc.constantFrom('a', 'b', 'c', 'zz');
    const num = fc.oneof(fc.nat(20), fc.integer(), fc.double(), fc.constant(undefined));
    const entry = fc.record({ term: num, index: num, type: fc.constantFrom('normal', 'confChange', 'x'), data: fc.uint8Array({ maxLength: 8 }) });
    const msg = fc.record(
      {
        type: fc.constantFrom('preVote', 'preVoteResp', 'vote', 'voteResp', 'app', 'appResp', 'heartbeat', 'heartbeatResp', 'snap', 'timeoutNow', 'readIndex', 'readIndexResp', 'bogus'),
        from: ids,
        to: ids,
        term: num,
        logTerm: num,
        index: num,
        commit: num,
        reject: fc.oneof(fc.boolean(), fc.constant(undefined)),
        rejectHint: num,
        context: fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.constant(undefined)),
        entries: fc.oneof(fc.array(entry, { maxLength: 4 }), fc.constant(undefined)),
        snapshot: fc.oneof(
          fc.constant(undefined),
          fc.record({
            metadata: fc.record({
              index: num,
              term: num,
              confState: fc.record({
                voters: fc.array(ids, { maxLength: 3 }),
                learners: fc.array(ids, { maxLength: 2 }),
                votersOutgoing: fc.array(ids, { maxLength: 2 }),
                learnersNext: fc.constant([]),
                autoLeave: fc.boolean(),
              }),
            }),
            data: fc.constant(enc('[]')),
          }),
        ),
      },
      { requiredKeys: ['type', 'from', 'to', 'term'] },
    );
    fc.assert(
      fc.property(fc.array(msg, { minLength: 1, maxLength: 30 }), fc.nat(3), (msgs, who) => {
        const net = new Net(['a', 'b', 'c']);
        net.campaign('a');
        net.proposeStr('a', 'x');
        const target = ['a', 'b', 'c'][who % 3]!;
        for (const raw of msgs) {
          let m: Message;
          try {
            m = validateMessage({ ...raw, to: target });
          } catch (e) {
            expect(e).toBeInstanceOf(MooringError);
            continue;
          }
          net.core(target).step(m); // must not throw
          net.stabilize();
        }
        // The cluster still works afterwards (no node wedged).
        net.heal();
        net.tickAll(40);
        const l = net.leaders();
        expect(l.length).toBeGreaterThanOrEqual(1);
      }),
      { numRuns: 150, verbose: true },
    );
  });

  it('conf changes round-trip and garbage conf data is rejected', () => {
    const cc = { changes: [{ type: 'addVoter' as const, node: 'n1' }, { type: 'removeNode' as const, node: 'n2' }], transition: 'joint' as const };
    expect(decodeConfChange(encodeConfChange(cc))).toEqual(cc);
    expect(decodeConfChange(encodeConfChange({ changes: [] }))).toEqual({ changes: [] });
    for (const junk of [new Uint8Array([0xc1]), packr.pack({ c: 'x' }), packr.pack({ c: [['bad', 'n']] }), packr.pack(5)]) {
      expect(() => decodeConfChange(junk)).toThrow(MooringError);
    }
  });
});
