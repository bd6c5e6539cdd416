/**
 * Leader planners for time-dependent housekeeping: abandoned writes (planReclaim) and graceful drains
 * (planDrain). Client expiry is planClientExpiry (clients.ts), eviction is planEviction (eviction.ts). Each
 * returns a command for the leader to propose, or null; apply re-checks every precondition with the entry time.
 */
import type { DrainSegments, ReclaimPuts, SetStateVersion } from './commands.js';
import type { LeaseTable } from './leases.js';
import { maxDrainObjectsPerCommand, maxKeysPerCommand } from './limits.js';
import { isComplete, isSettled } from './objects.js';
import { boundedDrainStateVersion, supportedStateVersion } from './state-version.js';
import type { StateView } from './state-view.js';

/** PutStarts (and UpsertStarts, OffloadStarts, RepairStarts) not ended within `putTimeoutMs`. */
export function planReclaim(state: StateView, nowMs: number, putTimeoutMs: number): ReclaimPuts | null {
  const keys: string[] = [];
  for (const key of state.inFlight) {
    const o = state.objects.get(key);
    if (o === undefined) continue;
    let started = Infinity;
    if (!isComplete(o)) started = o.createdAtMs;
    if (o.pending !== null) started = Math.min(started, o.pending.startedAtMs);
    if (o.offload !== null) started = Math.min(started, o.offload.startedAtMs);
    if (o.repair !== null) started = Math.min(started, o.repair.startedAtMs);
    if (started + putTimeoutMs <= nowMs) {
      keys.push(key);
      if (keys.length >= maxKeysPerCommand) break;
    }
  }
  return keys.length === 0 ? null : { type: 'ReclaimPuts', keys, putTimeoutMs };
}

/**
 * For DRAINING segments: drop replicas of complete objects that are not leased; a segment left empty becomes
 * DRAINED and goes. Null when nothing drains, or while a new leader treats every object as leased.
 * `awaitingRepair` (from the leader's repair scheduler): keys whose replica on a draining segment must stay until
 * a repair has copied it elsewhere — a drain moves data off instead of dropping it.
 */
/** The keys a DrainSegments drops replicas of: objects with a replica on one of its segments, but for its skipKeys. */
export function drainedKeys(state: StateView, drain: DrainSegments): string[] {
  const ids = new Set(drain.segmentIds);
  const skip = new Set(drain.skipKeys ?? []);
  const out = new Set<string>();
  const on = (key: string, obj = state.objects.get(key)): boolean => obj !== undefined && !skip.has(key) && obj.replicas.some((r) => ids.has(r.segmentId));
  if (drain.keys !== undefined) {
    for (const key of drain.keys) if (on(key)) out.add(key);
  } else for (const id of ids) for (const obj of state.onSegment.on(id)) if (on(obj.key, obj)) out.add(obj.key);
  return [...out];
}

export function planDrain(state: StateView, leases: LeaseTable, nowMs: number, awaitingRepair: ReadonlySet<string> = new Set()): DrainSegments | null {
  const draining = state.ordered.filter((s) => s.rec.status === 'DRAINING').map((s) => s.rec.id);
  if (draining.length === 0 || leases.allLeased(nowMs)) return null;
  const ids = new Set(draining);
  const onDraining = (k: string): boolean => state.objects.get(k)?.replicas.some((r) => ids.has(r.segmentId)) ?? false;
  const held = [...awaitingRepair].filter(onDraining);
  // More held keys than one command carries: wait for repairs rather than drop replicas that must move.
  if (held.length > maxKeysPerCommand) return null;
  const skipKeys = [...new Set([...held, ...leases.leasedKeys(nowMs).filter(onDraining)])].slice(0, maxKeysPerCommand);
  const segmentIds = draining.slice(0, maxKeysPerCommand);
  if (state.stateVersion < boundedDrainStateVersion) return { type: 'DrainSegments', segmentIds, skipKeys };
  // Bounded (state version 2): at most maxDrainObjectsPerCommand of the objects it would drop; the leader proposes
  // the next one when this one applied (an empty list still lets an emptied segment go).
  const skip = new Set(skipKeys);
  const keys = new Set<string>();
  for (const id of segmentIds) {
    for (const o of state.onSegment.on(id)) {
      if (keys.size >= maxDrainObjectsPerCommand) break;
      if (!skip.has(o.key) && isSettled(o) && o.replicas.some((r) => ids.has(r.segmentId))) keys.add(o.key);
    }
  }
  return { type: 'DrainSegments', segmentIds, skipKeys, keys: [...keys] };
}

/**
 * Raises the cluster's state version to what this Mooring supports once every other member (`versionOf`: what it
 * announced in its handshake; undefined if it has not connected since this process started) supports it too.
 */
export function planStateVersion(state: Pick<StateView, 'stateVersion'>, others: readonly string[], versionOf: (member: string) => number | undefined): SetStateVersion | null {
  if (state.stateVersion >= supportedStateVersion) return null;
  for (const m of others) if ((versionOf(m) ?? 0) < supportedStateVersion) return null;
  return { type: 'SetStateVersion', version: supportedStateVersion };
}
