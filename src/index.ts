// Public surface of `mooring`. Each layer adds its exports here as it lands.
export { ErrorCode, MooringError, describeError, isErrorCode } from './errors.js';
export type { WireError } from './errors.js';
export { SeededRng } from './util/rng.js';
export type { Rng } from './util/rng.js';
export type * from './raft/types.js';
export type { PeerTransport, PeerAddress, PeerId } from './transport/types.js';
