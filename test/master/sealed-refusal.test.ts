/**
 * Sealed lease refusals on real masters (three in-process MasterNodes, real sockets and LevelDB): a write sent with
 * `sealRefusal` that a read lease refuses gets the refusal recorded as its seq's answer (SealRefusal, state version
 * 4), so the same write retried after the lease ran out still gets that refusal and changes nothing; without the
 * flag the refusal leaves the seq open and the retry applies. The client sends the flag after an attempt of unknown
 * fate (test/client/retry-property.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { sealFor } from '../../src/master/admission.js';
import { MasterClient } from '../../src/master/client.js';
import { maxSealedMessageBytes } from '../../src/statemachine/commands.js';
import { sealedRefusalStateVersion } from '../../src/statemachine/state-version.js';
import { validateCommand } from '../../src/statemachine/commands.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();
const leaseTtlMs = 300;

describe('sealed lease refusals', () => {
  it('a refusal sealed for its seq stays the answer after the lease ends; an unsealed one leaves the seq open', async () => {
    const nodes = await startMasters(cleanup, { prefix: 'mooring-seal-', config: { raft: { tickMs: 10 }, leaseTtlMs } });
    // The leader raises the state version once every member announced support (housekeeping, about a second).
    await waitFor(() => nodes.some((m) => m.isLeader && m.masterState.stateVersion >= sealedRefusalStateVersion), 15_000, 20);
    const c = new MasterClient({ endpoints: nodes.map((m) => `127.0.0.1:${m.ports.rpc}`), retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 }, readFrom: 'leader' });
    cleanup.push(() => c.close());
    await c.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z1' });
    for (const key of ['sealed', 'open']) {
      await c.putStart(key, 64);
      await c.putEnd(key);
    }
    const remove = (key: string, seq: number, seal: boolean) => c.callRaw('remove', { key, clientId: 'writer', seq, ...(seal ? { sealRefusal: true } : {}) });

    await c.getReplicaList('sealed'); // leased for leaseTtlMs
    await expect(remove('sealed', 1, true)).rejects.toMatchObject({ code: 'OBJECT_HAS_LEASE', sealed: true, definite: true });
    await c.getReplicaList('open');
    await expect(remove('open', 2, false)).rejects.toMatchObject({ code: 'OBJECT_HAS_LEASE', sealed: false });

    await new Promise((r) => setTimeout(r, leaseTtlMs * 2));
    // Same seqs, no lease any more: the sealed one is answered from the reply window, the open one applies.
    await expect(remove('sealed', 1, false)).rejects.toMatchObject({ code: 'OBJECT_HAS_LEASE', sealed: true });
    expect((await c.getReplicaList('sealed')).replicas.length).toBeGreaterThan(0);
    await expect(remove('open', 2, false)).resolves.toBeNull();
    await expect(c.getReplicaList('open')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });
    // Every master applied the seal alike: the same reply for the seq in each state.
    await waitFor(() => nodes.every((m) => m.masterState.sessionReply('writer', 1) !== undefined), 5_000, 20);
    for (const m of nodes) expect(m.masterState.sessionReply('writer', 1)).toMatchObject({ ok: false, error: { code: 'OBJECT_HAS_LEASE', sealed: true } });
  });

  it('a seal carries at most maxSealedMessageBytes of the refusal, cut on a character boundary', () => {
    const remove = { type: 'Remove' as const, key: 'k', clientId: 'w', seq: 3 };
    for (const ch of ['a', 'é', '€', '😀']) {
      const message = ch.repeat(2 * maxSealedMessageBytes);
      const seal = sealFor(remove, new MooringError(ErrorCode.OBJECT_HAS_LEASE, message), true, sealedRefusalStateVersion)!;
      expect(Buffer.byteLength(seal.message)).toBeLessThanOrEqual(maxSealedMessageBytes);
      expect(Buffer.byteLength(seal.message)).toBeGreaterThan(maxSealedMessageBytes - 4);
      expect(message.startsWith(seal.message)).toBe(true);
      expect(/[\uD800-\uDBFF]$/.test(seal.message)).toBe(false); // no half of a surrogate pair
      expect(() => validateCommand(seal)).not.toThrow();
    }
    const short = sealFor(remove, new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased'), true, sealedRefusalStateVersion)!;
    expect(short.message).toBe('leased');
  });
});
