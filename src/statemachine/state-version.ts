/**
 * The state version: which command forms every replica of a cluster applies the same way. A command form that an
 * older Mooring would apply differently (it ignores a field it does not know) is proposed only once the replicated
 * state version allows it, and the leader raises that version (SetStateVersion) only once every member announced
 * (in its connection handshake) that it supports it: during a rolling upgrade the old forms stay in use.
 *
 *   1  every form up to this version (what an existing data dir holds: no record means 1).
 *   2  DrainSegments may list the `keys` it drops (a bounded drain: at most maxDrainObjectsPerCommand objects per
 *      command; without `keys` a drain drops every settled object on its segments at once).
 *   3  Session epochs: OpenSession opens a client's session (its epoch is the entry's index) and client writes may
 *      carry `epoch`; a write whose epoch is not its client's open session is refused (SESSION_EXPIRED).
 *   4  SealRefusal: the leader records a lease refusal as a write's answer for its seq when the client asks (an
 *      earlier attempt of the write has an unknown fate), so the refusal is definite.
 *
 * One way: once raised, a master whose Mooring supports less stops (crash-stop, naming the version) instead of
 * applying commands it would misread — so an upgrade cannot be rolled back past that point (docs/operations.md).
 */
export const supportedStateVersion = 4;

/** The version from which DrainSegments may carry `keys`. */
export const boundedDrainStateVersion = 2;

/** The version from which OpenSession opens sessions and writes' `epoch` is checked. */
export const sessionEpochStateVersion = 3;

/** The version from which SealRefusal may be proposed. */
export const sealedRefusalStateVersion = 4;
