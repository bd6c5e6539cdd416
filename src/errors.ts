/**
 * One enum of named error codes, shared by every layer and carried over the wire as strings.
 * Names follow Mooncake Store's master where users already know them; `humanMessages` below says what each means.
 */
export const ErrorCode = {
  // Objects and replicas
  OBJECT_NOT_FOUND: 'OBJECT_NOT_FOUND',
  OBJECT_ALREADY_EXISTS: 'OBJECT_ALREADY_EXISTS',
  OBJECT_HAS_LEASE: 'OBJECT_HAS_LEASE',
  OBJECT_NOT_READY: 'OBJECT_NOT_READY',
  LEASE_EXPIRED: 'LEASE_EXPIRED',
  OBJECT_PINNED: 'OBJECT_PINNED',
  // Segments and clients
  SEGMENT_NOT_FOUND: 'SEGMENT_NOT_FOUND',
  SEGMENT_ALREADY_EXISTS: 'SEGMENT_ALREADY_EXISTS',
  CLIENT_NOT_FOUND: 'CLIENT_NOT_FOUND',
  /** The write's session (clientId + epoch) is not open any more: the client expired, or a newer session replaced it. */
  SESSION_EXPIRED: 'SESSION_EXPIRED',
  NO_SPACE: 'NO_SPACE',
  // Requests
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  UNAUTHORIZED: 'UNAUTHORIZED',
  // Consensus and availability
  NOT_LEADER: 'NOT_LEADER',
  TIMEOUT: 'TIMEOUT',
  UNAVAILABLE: 'UNAVAILABLE',
  PROPOSAL_DROPPED: 'PROPOSAL_DROPPED',
  /** A client gave up on a write after an attempt that may have applied (a timeout, a lost connection). */
  OUTCOME_UNKNOWN: 'OUTCOME_UNKNOWN',
  LEADERSHIP_TRANSFER_IN_PROGRESS: 'LEADERSHIP_TRANSFER_IN_PROGRESS',
  MEMBERSHIP_CHANGE_IN_PROGRESS: 'MEMBERSHIP_CHANGE_IN_PROGRESS',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  // Wire
  CLUSTER_MISMATCH: 'CLUSTER_MISMATCH',
  PROTOCOL_MISMATCH: 'PROTOCOL_MISMATCH',
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  MALFORMED_FRAME: 'MALFORMED_FRAME',
  QUEUE_FULL: 'QUEUE_FULL',
  /** The leader is saturated and refused the request before proposing it (definite); retry after `retryAfterMs`. */
  BUSY: 'BUSY',
  RPC_FAILED: 'RPC_FAILED',
  // Storage
  STORAGE_FAILED: 'STORAGE_FAILED',
  CORRUPT_LOG: 'CORRUPT_LOG',
  COMPACTED: 'COMPACTED',
  // Data path
  ENGINE_UNAVAILABLE: 'ENGINE_UNAVAILABLE',
  TRANSFER_FAILED: 'TRANSFER_FAILED',
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  SEGMENT_CLOSED: 'SEGMENT_CLOSED',
  OUT_OF_RANGE: 'OUT_OF_RANGE',
  // Configuration
  INVALID_CONFIG: 'INVALID_CONFIG',
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const humanMessages: Record<ErrorCode, string> = {
  OBJECT_NOT_FOUND: 'no object with that key',
  OBJECT_ALREADY_EXISTS: 'an object with that key already exists',
  OBJECT_HAS_LEASE: 'the object is under a read lease and cannot be removed yet',
  OBJECT_NOT_READY: 'the object has no complete replica yet',
  LEASE_EXPIRED: 'the read lease ran out before the read finished',
  OBJECT_PINNED: 'the object is pinned and cannot be removed without force',
  SEGMENT_NOT_FOUND: 'no segment with that id',
  SEGMENT_ALREADY_EXISTS: 'a segment with that id (or an overlapping range) is already mounted',
  CLIENT_NOT_FOUND: 'unknown client; mount your segments again',
  SESSION_EXPIRED: 'the client session is not open any more (the client expired, or another process opened a session with the same client id); this attempt was not applied, an earlier attempt of the same write may have been',
  NO_SPACE: 'no segment has a free extent large enough',
  INVALID_ARGUMENT: 'invalid argument',
  UNAUTHORIZED: 'missing or wrong credentials',
  NOT_LEADER: 'this master is not the leader',
  TIMEOUT: 'the operation timed out; its outcome is unknown',
  UNAVAILABLE: 'no quorum is reachable',
  PROPOSAL_DROPPED: 'the proposal was dropped (leadership changed or limits reached); its outcome is unknown',
  OUTCOME_UNKNOWN: 'the write may or may not have been applied: an attempt timed out or lost its connection',
  LEADERSHIP_TRANSFER_IN_PROGRESS: 'a leadership transfer is in progress; retry shortly',
  MEMBERSHIP_CHANGE_IN_PROGRESS: 'another membership change is still in progress',
  SHUTTING_DOWN: 'the node is shutting down',
  CLUSTER_MISMATCH: 'the peer belongs to another cluster',
  PROTOCOL_MISMATCH: 'the peer speaks another protocol version',
  FRAME_TOO_LARGE: 'the frame exceeds maxFrameBytes',
  MALFORMED_FRAME: 'the frame does not decode',
  QUEUE_FULL: 'the send queue is full',
  BUSY: 'the master is saturated and did not take the request; retry after retryAfterMs',
  RPC_FAILED: 'the remote call failed',
  STORAGE_FAILED: 'a durable write failed; the node stops rather than continue with a log it could not persist',
  CORRUPT_LOG: 'the log failed its checksum',
  COMPACTED: 'the requested entries were compacted into a snapshot',
  ENGINE_UNAVAILABLE: 'the native engine is not available',
  TRANSFER_FAILED: 'the data transfer failed',
  CHECKSUM_MISMATCH: 'the bytes read do not match their checksum',
  SEGMENT_CLOSED: 'the segment was closed',
  OUT_OF_RANGE: 'offset and length fall outside the segment',
  INVALID_CONFIG: 'invalid configuration',
  INTERNAL: 'internal error',
};

export function describeError(code: ErrorCode): string {
  return humanMessages[code];
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(humanMessages, value);
}

/** The shape an error takes on the wire: `{code, message, leaderHint?, leaderTerm?, definite?, retryAfterMs?}`. */
export interface WireError {
  code: ErrorCode;
  message: string;
  leaderHint?: string;
  /** The term in which the hinted leader leads, so a client never lets an older hint override a newer one. */
  leaderTerm?: number;
  /** false when the operation may have taken effect (see MooringError.definite). */
  definite?: boolean;
  /** For BUSY: how long the sender expects its queue to take to drain, in milliseconds. */
  retryAfterMs?: number;
  /**
   * A refusal the state machine recorded as the write's answer for its session seq (SealRefusal): no attempt of the
   * write can apply after it, so it is definite even while other attempts are out.
   */
  sealed?: boolean;
}

export interface MooringErrorOptions {
  leaderHint?: string;
  leaderTerm?: number;
  /** Default: false for TIMEOUT, PROPOSAL_DROPPED and OUTCOME_UNKNOWN, true otherwise. */
  definite?: boolean;
  /** For BUSY: when to come back, in milliseconds. */
  retryAfterMs?: number;
  /** Recorded by the state machine as the write's answer for its seq (WireError.sealed). */
  sealed?: boolean;
  cause?: unknown;
}

/** Upper bound on a retryAfterMs read from the wire: a client never waits longer than this on one BUSY. */
export const maxRetryAfterMs = 5_000;

/** Codes whose operation may have taken effect, unless the thrower says otherwise. */
const ambiguousCodes = new Set<string>(['TIMEOUT', 'PROPOSAL_DROPPED', 'OUTCOME_UNKNOWN']);

export class MooringError extends Error {
  readonly code: ErrorCode;
  /** For NOT_LEADER: the node id (or client address) of the leader this node believes in, if any. */
  readonly leaderHint: string | undefined;
  /** For NOT_LEADER: the term of the hinted leader, when the sender knows it. */
  readonly leaderTerm: number | undefined;
  /**
   * true: the operation did not take effect (a refusal). false: it may have (a timeout, a lost connection, a
   * leader that stepped down with the write in flight); a write retried with the same session seq settles it.
   */
  readonly definite: boolean;
  /** For BUSY: how long the refusing node expects its queue to take to drain, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** A refusal sealed for the write's session seq (WireError.sealed): no attempt of the write applies after it. */
  readonly sealed: boolean;

  constructor(code: ErrorCode, message?: string, options?: MooringErrorOptions) {
    super(message ?? humanMessages[code], options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'MooringError';
    this.code = code;
    this.leaderHint = options?.leaderHint;
    this.leaderTerm = options?.leaderTerm;
    this.definite = options?.definite ?? !ambiguousCodes.has(code);
    this.retryAfterMs = options?.retryAfterMs;
    this.sealed = options?.sealed === true;
  }

  /**
   * One built without capturing a stack trace: for refusals that only ever travel as a reply (a state machine's
   * refusal, NOT_LEADER to every parked request after a leader change), where the capture is most of their cost.
   */
  static replyOnly(code: ErrorCode, message?: string, options?: MooringErrorOptions): MooringError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new MooringError(code, message, options);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }

  toWire(): WireError {
    const wire: WireError = { code: this.code, message: this.message };
    if (this.leaderHint !== undefined) wire.leaderHint = this.leaderHint;
    if (this.leaderTerm !== undefined) wire.leaderTerm = this.leaderTerm;
    if (this.definite === ambiguousCodes.has(this.code)) wire.definite = this.definite;
    if (this.retryAfterMs !== undefined) wire.retryAfterMs = this.retryAfterMs;
    if (this.sealed) wire.sealed = true;
    return wire;
  }

  static fromWire(wire: unknown): MooringError {
    if (typeof wire !== 'object' || wire === null) {
      return new MooringError(ErrorCode.RPC_FAILED, 'remote error without a body');
    }
    const w = wire as Partial<WireError>;
    const code = isErrorCode(w.code) ? w.code : ErrorCode.RPC_FAILED;
    const message = typeof w.message === 'string' ? w.message : humanMessages[code];
    const opts: MooringErrorOptions = {};
    if (typeof w.leaderHint === 'string') opts.leaderHint = w.leaderHint;
    if (typeof w.leaderTerm === 'number' && Number.isSafeInteger(w.leaderTerm) && w.leaderTerm >= 0) opts.leaderTerm = w.leaderTerm;
    if (typeof w.definite === 'boolean') opts.definite = w.definite;
    if (w.sealed === true) opts.sealed = true;
    // A hostile or buggy peer must not park a client for long: clamp to [0, maxRetryAfterMs].
    if (typeof w.retryAfterMs === 'number' && Number.isFinite(w.retryAfterMs)) opts.retryAfterMs = Math.min(Math.max(0, Math.round(w.retryAfterMs)), maxRetryAfterMs);
    return new MooringError(code, message, opts);
  }
}

/**
 * Invariant check (TigerBeetle style): a failed assertion is a bug in Mooring, never bad input. A message built from
 * values is passed as a function (``() => `…${x}` ``): hot paths assert on every step, and a template literal was
 * formatted every time (numbers to strings, concatenations) although it is read only when the check fails. Inside a
 * loop, where the function would capture a per-iteration variable (a heap context per iteration), guard instead:
 * ``if (!ok) assert(false, `…${x}`)``.
 */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${typeof message === 'function' ? message() : message}`);
}
