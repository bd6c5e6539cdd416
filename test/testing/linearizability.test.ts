import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { checkLinearizability, kvModel, type KvInput, type KvOutput, type Operation } from '../../src/testing/linearizability.js';

type KvOp = Operation<KvInput, KvOutput>;
const put = (c: number, key: string, value: string, call: number, ret?: number): KvOp =>
  ret === undefined
    ? { clientId: c, op: 'put', key, input: { kind: 'put', value }, call }
    : { clientId: c, op: 'put', key, input: { kind: 'put', value }, output: null, call, return: ret };
const get = (c: number, key: string, value: string | null, call: number, ret?: number): KvOp =>
  ret === undefined
    ? { clientId: c, op: 'get', key, input: { kind: 'get' }, call }
    : { clientId: c, op: 'get', key, input: { kind: 'get' }, output: { value }, call, return: ret };
const cas = (c: number, key: string, expected: string | null, value: string, ok: boolean | undefined, call: number, ret?: number): KvOp =>
  ret === undefined || ok === undefined
    ? { clientId: c, op: 'cas', key, input: { kind: 'cas', expected, value }, call }
    : { clientId: c, op: 'cas', key, input: { kind: 'cas', expected, value }, output: { ok }, call, return: ret };
const append = (c: number, key: string, value: string, call: number, ret: number): KvOp => ({
  clientId: c, op: 'append', key, input: { kind: 'append', value }, output: null, call, return: ret,
});

describe('linearizability checker (KV model)', () => {
  it('accepts a sequential history and an empty one', () => {
    expect(checkLinearizability([], kvModel).ok).toBe(true);
    const h = [put(1, 'x', 'a', 0, 1), get(1, 'x', 'a', 2, 3), put(2, 'x', 'b', 4, 5), get(2, 'x', 'b', 6, 7)];
    expect(checkLinearizability(h, kvModel).ok).toBe(true);
  });

  it('accepts concurrent operations that can be ordered either way', () => {
    // put(a) and put(b) overlap; both later reads see b, so a then b.
    const h = [put(1, 'x', 'a', 0, 10), put(2, 'x', 'b', 1, 9), get(3, 'x', 'b', 11, 12), get(3, 'x', 'b', 13, 14)];
    expect(checkLinearizability(h, kvModel).ok).toBe(true);
    // A read overlapping a write may see the old or the new value.
    const h2 = [put(1, 'x', 'a', 0, 1), put(1, 'x', 'b', 2, 10), get(2, 'x', 'a', 3, 4), get(2, 'x', 'b', 5, 6), get(3, 'x', 'b', 11, 12)];
    expect(checkLinearizability(h2, kvModel).ok).toBe(true);
  });

  it('rejects a stale read and explains the shortest failing prefix', () => {
    const h = [
      put(1, 'x', 'a', 0, 1),
      put(1, 'x', 'b', 2, 3),
      get(2, 'x', 'a', 4, 5), // stale: b was acknowledged before this read began
      put(1, 'x', 'c', 6, 7),
      get(2, 'x', 'c', 8, 9),
    ];
    const r = checkLinearizability(h, kvModel);
    expect(r.ok).toBe(false);
    expect(r.counterexample!.key).toBe('x');
    expect(r.counterexample!.operations).toHaveLength(3);
    expect(r.counterexample!.culprit.op).toBe('get');
    expect(r.counterexample!.explanation).toContain('get() -> {"value":"a"}');
    expect(r.counterexample!.explanation).toContain('<--');
  });

  it('rejects a read that goes back in time (new value then old value)', () => {
    const h = [put(1, 'x', 'a', 0, 1), put(1, 'x', 'b', 2, 20), get(2, 'x', 'b', 3, 4), get(3, 'x', 'a', 5, 6)];
    expect(checkLinearizability(h, kvModel).ok).toBe(false);
  });

  it('rejects a value nobody wrote, and a lost acknowledged write', () => {
    expect(checkLinearizability([put(1, 'x', 'a', 0, 1), get(2, 'x', 'z', 2, 3)], kvModel).ok).toBe(false);
    expect(checkLinearizability([put(1, 'x', 'a', 0, 1), get(2, 'x', null, 2, 3)], kvModel).ok).toBe(false);
  });

  it('unknown outcome: a timed-out put may have taken effect (seen later)', () => {
    const h = [put(1, 'x', 'a', 0, 1), put(2, 'x', 'b', 2), get(3, 'x', 'b', 50, 51)];
    expect(checkLinearizability(h, kvModel).ok).toBe(true);
  });

  it('unknown outcome: a timed-out put may never take effect', () => {
    const h = [put(1, 'x', 'a', 0, 1), put(2, 'x', 'b', 2), get(3, 'x', 'a', 50, 51), get(3, 'x', 'a', 52, 53)];
    expect(checkLinearizability(h, kvModel).ok).toBe(true);
  });

  it('unknown outcome: once seen, a timed-out put cannot be un-seen', () => {
    const h = [put(1, 'x', 'a', 0, 1), put(2, 'x', 'b', 2), get(3, 'x', 'b', 50, 51), get(3, 'x', 'a', 52, 53)];
    expect(checkLinearizability(h, kvModel).ok).toBe(false);
  });

  it('unknown outcome: cannot take effect before its call', () => {
    const h = [get(3, 'x', 'b', 0, 1), put(2, 'x', 'b', 2)];
    expect(checkLinearizability(h, kvModel).ok).toBe(false);
  });

  it('cas with known and unknown outcomes', () => {
    const ok = [put(1, 'x', 'a', 0, 1), cas(2, 'x', 'a', 'b', true, 2, 3), cas(3, 'x', 'a', 'c', false, 4, 5), get(1, 'x', 'b', 6, 7)];
    expect(checkLinearizability(ok, kvModel).ok).toBe(true);
    const bad = [put(1, 'x', 'a', 0, 1), cas(2, 'x', 'a', 'b', true, 2, 3), cas(3, 'x', 'a', 'c', true, 4, 5)];
    expect(checkLinearizability(bad, kvModel).ok).toBe(false);
    const unknown = [put(1, 'x', 'a', 0, 1), cas(2, 'x', 'a', 'b', undefined, 2), get(1, 'x', 'b', 6, 7)];
    expect(checkLinearizability(unknown, kvModel).ok).toBe(true);
  });

  it('append accumulates; a missing middle append is caught', () => {
    const ok = [append(1, 'x', 'a', 0, 1), append(2, 'x', 'b', 2, 3), get(1, 'x', 'ab', 4, 5)];
    expect(checkLinearizability(ok, kvModel).ok).toBe(true);
    const bad = [append(1, 'x', 'a', 0, 1), append(2, 'x', 'b', 2, 3), get(1, 'x', 'b', 4, 5)];
    expect(checkLinearizability(bad, kvModel).ok).toBe(false);
  });

  it('keys are independent: a violation on one key is reported for that key', () => {
    const h = [put(1, 'x', 'a', 0, 1), put(1, 'y', 'q', 0, 1), get(2, 'y', 'q', 2, 3), get(2, 'x', null, 2, 3)];
    const r = checkLinearizability(h, kvModel);
    expect(r.ok).toBe(false);
    expect(r.counterexample!.key).toBe('x');
  });

  it('is bounded: an over-large key is reported inconclusive rather than searched', () => {
    const h: KvOp[] = [];
    for (let i = 0; i < 50; i++) h.push(put(i, 'x', String(i), 0, 100));
    const r = checkLinearizability(h, kvModel, { maxOperationsPerKey: 10 });
    expect(r.ok).toBe(true);
    expect(r.inconclusiveKeys).toEqual(['x']);
    const r2 = checkLinearizability([...h, get(99, 'x', 'nobody', 200, 201)], kvModel, { maxStepsPerKey: 100 });
    expect(r2.inconclusiveKeys).toEqual(['x']);
  });

  it('uses the state cache: 14 fully concurrent writes then an impossible read are refuted, 40 give up', () => {
    // Without the (linearized set, state) cache this is 14! orders; with it, 2^14 x 15 states.
    const h: KvOp[] = [];
    for (let i = 0; i < 14; i++) h.push(put(i, 'x', String(i), 0, 100));
    h.push(get(99, 'x', '7', 200, 201));
    expect(checkLinearizability(h, kvModel).ok).toBe(true);
    h.push(get(99, 'x', 'never', 202, 203));
    const r = checkLinearizability(h, kvModel);
    expect(r.ok).toBe(false);
    expect(r.counterexample!.culprit.output).toEqual({ value: 'never' });
    // 2^40 subsets cannot be explored: the step bound makes the answer inconclusive instead of hanging.
    const big: KvOp[] = [];
    for (let i = 0; i < 40; i++) big.push(put(i, 'x', String(i), 0, 100));
    big.push(get(99, 'x', 'never', 202, 203));
    const r2 = checkLinearizability(big, kvModel, { maxStepsPerKey: 200_000 });
    expect(r2.ok).toBe(true);
    expect(r2.inconclusiveKeys).toEqual(['x']);
  });

  it('property: any history produced by a sequential register is linearizable; a corrupted read is not', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 4 })), { minLength: 1, maxLength: 40 }),
        (steps) => {
          // Build operations that execute atomically at distinct instants but report wide, overlapping intervals.
          let value: string | null = null;
          const h: KvOp[] = [];
          steps.forEach(([isPut, v, slack], i) => {
            const call = i * 10 - slack * 3;
            const ret = i * 10 + slack * 3;
            if (isPut) {
              value = String(v);
              h.push(put(i % 3, 'k', value, call, ret));
            } else h.push(get(i % 3, 'k', value, call, ret));
          });
          expect(checkLinearizability(h, kvModel).ok).toBe(true);
          // Appending a read of a never-written value after everything must fail.
          h.push(get(7, 'k', 'never-written', steps.length * 10 + 100, steps.length * 10 + 101));
          expect(checkLinearizability(h, kvModel).ok).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });
});
