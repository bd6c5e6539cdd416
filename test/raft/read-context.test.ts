import { describe, expect, it } from 'vitest';
import { answerReadContext, encodeReadContext, readPayloads, readReplies, readRoundKey } from '../../src/raft/node/read-context.js';

const b = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('read-context (follower read rounds)', () => {
  it('a round without payloads is the bare 8-byte id, as before follower reads', () => {
    const ctx = encodeReadContext(9, 7, [null, null]);
    expect(ctx.byteLength).toBe(8);
    expect(readPayloads(ctx)).toEqual([]);
    expect(readReplies(ctx)).toBeUndefined();
  });

  it('carries payloads to the leader and its replies back under the same round key', () => {
    const ctx = encodeReadContext(9, 42, [b('a'), null, b('c')]);
    expect(readPayloads(ctx).map((p) => (p === null ? null : new TextDecoder().decode(p)))).toEqual(['a', null, 'c']);
    expect(readReplies(ctx)).toBeUndefined(); // the leader's own round echoes payloads, not replies
    const answered = answerReadContext(ctx, [b('x'), null, b('z')]);
    expect(readRoundKey(answered)).toBe(readRoundKey(ctx));
    expect(readReplies(answered)!.map((p) => (p === null ? null : new TextDecoder().decode(p)))).toEqual(['x', null, 'z']);
    expect(readPayloads(answered)).toEqual([]);
    expect(readRoundKey(encodeReadContext(9, 43, [b('a')]))).not.toBe(readRoundKey(ctx));
  });

  it("a restarted node's rounds never match its previous process's: the incarnation is part of the round id", () => {
    // Round numbers start again at 1 in each process; an answer to the old process's round 1 arriving late must not
    // be taken for the new process's round 1 (full-node simulator seed 990668).
    const before = encodeReadContext(0x1234_5678, 1, [b('k0')]);
    const after = encodeReadContext(0x9abc_def0, 1, [b('k2')]);
    expect(readRoundKey(answerReadContext(before, [b('')]))).not.toBe(readRoundKey(after));
    expect(readRoundKey(encodeReadContext(0x9abc_def0, 1, [null]))).toBe(readRoundKey(after));
  });

  it('refuses a malformed body with MALFORMED_FRAME (peer input is not trusted)', () => {
    const ctx = encodeReadContext(9, 1, [b('a')]);
    const bad = ctx.slice(0, 10);
    bad[9] = 0xc1; // never-used msgpack byte
    expect(() => readPayloads(bad)).toThrow(/does not decode/);
  });
});
