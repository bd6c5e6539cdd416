/**
 * The sequential specification the campaign's history is checked against: per key, a write-once register that
 * can be removed (Mooring's put does not overwrite: an existing key is OBJECT_ALREADY_EXISTS).
 *
 *   put(v)    ok → the key was absent, now v.                           failed → no effect.
 *   get       value → equals the state; null (OBJECT_NOT_FOUND) → the key is absent.
 *   remove    ok → the key was present, now absent; not-found → it was absent; other failures → no effect.
 *   lose      (injected by the campaign when every replica's storage node died) → absent, at any point later.
 *
 * Operations whose outcome is unknown (timeouts, connection loss) carry no output and no return: the checker
 * lets them take effect at any point after their call, or never.
 */
import type { Model, Operation } from '../linearizability.js';

export type StoreInput =
  | { kind: 'put'; value: string }
  | { kind: 'get' }
  | { kind: 'remove' }
  | { kind: 'lose' };

/** put/remove: {ok}, with notFound for a remove of an absent key; get: {value} (null = absent). */
export type StoreOutput = { ok: boolean; notFound?: boolean } | { value: string | null };

export type StoreState = string | null;

export const storeModel: Model<StoreState, StoreInput, StoreOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case 'put': {
        if (output === undefined) return [true, state === null ? input.value : state];
        if ('ok' in output && output.ok) return [state === null, input.value];
        return [true, state];
      }
      case 'get':
        if (output === undefined) return [true, state];
        return ['value' in output && output.value === state, state];
      case 'remove': {
        if (output === undefined) return [true, null];
        if ('ok' in output && output.ok) return [state !== null, null];
        if ('notFound' in output && output.notFound === true) return [state === null, state];
        return [true, state];
      }
      case 'lose':
        return [true, null];
    }
  },
  hash: (s) => (s === null ? '\u0001' : 's' + s),
  readOnly: (input) => input.kind === 'get',
  describeState: (s) => JSON.stringify(s),
  describeOperation(op: Operation<StoreInput, StoreOutput>) {
    const i = op.input;
    const arg = i.kind === 'put' ? JSON.stringify(i.value) : '';
    const out = op.return === undefined ? '?(unknown outcome)' : JSON.stringify(op.output);
    return `client ${op.clientId}: ${i.kind}(${arg}) -> ${out} [${op.call}, ${op.return ?? '…'}]`;
  },
};
