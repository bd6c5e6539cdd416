/**
 * The RPC contract (src/master/rpc-methods.ts) at the server edge: every request is validated before a handler
 * looks at it, and a write can only build the client command of its method.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { commandFor, parseArgs } from '../../src/master/rpc-methods.js';

describe('RPC contract', () => {
  it('builds the command of the method, drops leader-only fields and validates with the state machine rules', () => {
    const c = commandFor('remove', { key: 'k', force: true, clientId: 'c', seq: 1, type: 'Evict', skipKeys: ['x'], evictable: [], adminToken: 't', avoidLeader: 'h:1' });
    expect(c).toEqual({ type: 'Remove', key: 'k', force: true, clientId: 'c', seq: 1 });
    expect(() => commandFor('putStart', { key: 'k', size: -1, replicaNum: 1, clientId: 'c', seq: 1 })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => commandFor('remove', 'k')).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
  });

  it('validates read and admin arguments, keeping only what the contract names', () => {
    expect(parseArgs('getReplicaList', { key: 'k', stale: true, junk: 1 })).toEqual({ key: 'k', stale: true });
    expect(() => parseArgs('getReplicaList', { key: 5 })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => parseArgs('existKey', { key: 'k', stale: 'yes' })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => parseArgs('batchExistKey', { keys: [] })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(() => parseArgs('addMember', { id: 'm4', host: 'h', raftPort: 70000, rpcPort: 1 })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    expect(parseArgs('transferLeader', { to: 'm2', adminToken: 's' })).toEqual({ to: 'm2', adminToken: 's' });
  });
});
