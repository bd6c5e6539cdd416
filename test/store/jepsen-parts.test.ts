/**
 * The pieces the fault campaign relies on, checked so that a "linearizable: true" means something:
 * the store model rejects the anomalies it must (negative controls), and FaultProxy really passes, cuts and
 * black-holes TCP traffic.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { checkLinearizability, type Operation } from '../../src/testing/linearizability.js';
import { storeModel, type StoreInput, type StoreOutput } from '../../src/testing/jepsen/model.js';
import { FaultProxy } from '../../src/testing/jepsen/proxy.js';
import { failureOf, valueBytes } from '../../src/testing/jepsen/campaign.js';
import { ErrorCode, MooringError } from '../../src/errors.js';

type Op = Operation<StoreInput, StoreOutput>;
const put = (c: number, v: string, call: number, ret?: number, ok = true): Op => ({ clientId: c, op: 'put', key: 'k', input: { kind: 'put', value: v }, call, ...(ret !== undefined ? { return: ret, output: { ok } } : {}) });
const get = (c: number, v: string | null, call: number, ret: number): Op => ({ clientId: c, op: 'get', key: 'k', input: { kind: 'get' }, output: { value: v }, call, return: ret });
const remove = (c: number, call: number, ret?: number, ok = true): Op => ({ clientId: c, op: 'remove', key: 'k', input: { kind: 'remove' }, call, ...(ret !== undefined ? { return: ret, output: { ok } } : {}) });
const lose = (call: number): Op => ({ clientId: 'faults', op: 'lose', key: 'k', input: { kind: 'lose' }, call });
const ok = (h: Op[]): boolean => checkLinearizability(h, storeModel).ok;

describe('store model (negative controls)', () => {
  it('accepts correct histories and rejects lost, stale, invented and overwritten values', () => {
    expect(ok([put(1, 'a', 0, 1), get(2, 'a', 2, 3), remove(1, 4, 5), get(2, null, 6, 7)])).toBe(true);
    // Lost acknowledged write.
    expect(ok([put(1, 'a', 0, 1), get(2, null, 2, 3)])).toBe(false);
    // Stale read after an acknowledged removal.
    expect(ok([put(1, 'a', 0, 1), remove(1, 2, 3), get(2, 'a', 4, 5)])).toBe(false);
    // A value nobody wrote.
    expect(ok([put(1, 'a', 0, 1), get(2, 'b', 2, 3)])).toBe(false);
    // Write-once: a second acknowledged put on a present key is impossible.
    expect(ok([put(1, 'a', 0, 1), put(2, 'b', 2, 3)])).toBe(false);
    // A failed put has no effect.
    expect(ok([put(1, 'a', 0, 1, false), get(2, 'a', 2, 3)])).toBe(false);
  });

  it('lets unknown outcomes and injected losses take effect at any point, or never', () => {
    expect(ok([put(1, 'a', 0), get(2, 'a', 5, 6)])).toBe(true);
    expect(ok([put(1, 'a', 0), get(2, null, 5, 6)])).toBe(true);
    expect(ok([put(1, 'a', 0, 1), lose(2), get(2, 'a', 3, 4), get(2, null, 5, 6)])).toBe(true);
    // ...but a lost object does not come back.
    expect(ok([put(1, 'a', 0, 1), lose(2), get(2, null, 3, 4), get(2, 'a', 5, 6)])).toBe(false);
    expect(ok([put(1, 'a', 0, 1), remove(1, 2), get(2, 'a', 3, 4), get(2, null, 5, 6)])).toBe(true);
  });

  it('counts a failure the client calls indefinite (SESSION_EXPIRED on a retry) as an unknown outcome', () => {
    expect(failureOf(new MooringError(ErrorCode.SESSION_EXPIRED, 'remove: session expired', { definite: false }))).toEqual({ code: ErrorCode.SESSION_EXPIRED, unknown: true });
    expect(failureOf(new MooringError(ErrorCode.SESSION_EXPIRED, 'session expired'))).toEqual({ code: ErrorCode.SESSION_EXPIRED, unknown: false });
    expect(failureOf(new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased'))).toEqual({ code: ErrorCode.OBJECT_HAS_LEASE, unknown: false });
    expect(failureOf(new MooringError(ErrorCode.OUTCOME_UNKNOWN, 'lost'))).toEqual({ code: ErrorCode.OUTCOME_UNKNOWN, unknown: true });
    expect(failureOf(new MooringError(ErrorCode.INVALID_ARGUMENT, 'seq is behind the reply window'))).toEqual({ code: ErrorCode.TIMEOUT, unknown: true });
  });

  it('value bytes identify their value', () => {
    expect(valueBytes(7, 4096).equals(valueBytes(7, 4096))).toBe(true);
    expect(valueBytes(7, 4096).equals(valueBytes(8, 4096))).toBe(false);
    expect(valueBytes(7, 4096).readUInt32LE(0)).toBe(7);
  });
});

describe('FaultProxy', () => {
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });

  async function echoServer(): Promise<number> {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.pipe(s);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => server.close(() => r())));
    return (server.address() as net.AddressInfo).port;
  }

  function roundTrip(port: number, msg: string, waitMs: number): Promise<string | 'closed' | 'silent'> {
    return new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      const t = setTimeout(() => { s.destroy(); resolve(got.length > 0 ? got : 'silent'); }, waitMs);
      s.on('data', (d) => { got += d.toString(); if (got === msg) { clearTimeout(t); s.destroy(); resolve(got); } });
      s.on('error', () => {});
      s.on('close', () => { clearTimeout(t); resolve(got === msg ? got : got.length > 0 ? got : 'closed'); });
      s.write(msg);
    });
  }

  it('passes, delays, black-holes and cuts', async () => {
    const port = await echoServer();
    const p = new FaultProxy('a->b', { host: '127.0.0.1', port });
    const pp = await p.start();
    closers.push(() => p.close());
    expect(await roundTrip(pp, 'hello', 2_000)).toBe('hello');
    p.setMode('delay', 50);
    expect(await roundTrip(pp, 'slow', 2_000)).toBe('slow');
    p.setMode('drop');
    expect(await roundTrip(pp, 'lost', 300)).toBe('silent');
    p.setMode('cut');
    expect(await roundTrip(pp, 'refused', 2_000)).toBe('closed');
    p.setMode('pass');
    expect(await roundTrip(pp, 'again', 2_000)).toBe('again');
  });
});
