/**
 * Public surface of `mooring/testing`: the deterministic simulator, fault schedules and the linearizability checker.
 *
 *   import fc from 'fast-check';
 *   import { runSchedule, scheduleArb } from 'mooring/testing';
 *   fc.assert(fc.property(fc.integer(), scheduleArb(), (seed, schedule) => {
 *     const r = runSchedule(seed, schedule);      // same seed + schedule => same r.traceHash
 *     return r.violations.length === 0 && r.linearizable && r.livenessOk;
 *   }));
 *
 * Or drive a `Simulator` by hand (crash/restart/pause/resume/partition/transfer/membership) for a scenario, and
 * check any history of your own with `checkLinearizability(history, model)`.
 * Liveness bound: after the last fault heals a proposal must commit within 10 election timeouts (200 ticks).
 */
export { SeededRng } from '../util/rng.js';
export {
  checkLinearizability,
  kvModel,
  defaultMaxOperationsPerKey,
  defaultMaxStepsPerKey,
} from './linearizability.js';
export type { Operation, Model, CheckOptions, CheckResult, Counterexample, KvInput, KvOutput, KvState } from './linearizability.js';
export { SimNetwork, noFaultRates } from './network.js';
export type { NetworkOptions, LinkRates, NetworkStats } from './network.js';
export { Simulator, SimNode } from './simulator.js';
export type { SimulatorOptions, SimStats } from './simulator.js';
export { KvMachine, encodeCommand, decodeCommand } from './kv-machine.js';
export type { KvCommand, KvReply, ApplyResult } from './kv-machine.js';
export { ClientPool } from './client-model.js';
export type { ClientOptions, ClientRequest, ClientResponse, ClientStats, ReadMode, EventClock } from './client-model.js';
export { InvariantChecker, maxViolationsKept } from './invariants.js';
export type { LogView } from './invariants.js';
export { runSchedule, describeFailure, livenessElectionTimeouts } from './schedule.js';
export type { FaultEvent, Schedule, RunOptions, RunResult } from './schedule.js';
export { scheduleArb, faultEventArb, scheduleForSeed, allFaultKinds, skewRates } from './arbitraries.js';
export type { FaultKind, ScheduleArbOptions } from './arbitraries.js';
export { TraceHasher } from './trace-hash.js';
export { createDefaultCore, newSimStorage } from './raft-adapter.js';
export type { SimCore, SimStorage } from './raft-adapter.js';
export { freePorts } from './ports.js';
// The full-node simulator: real RaftNodes + the master state machine on a simulated clock, network and disk.
export { FullSim } from './fullnode/full-sim.js';
export type { CrashKind, FullSimOptions, SimLeaseOptions } from './fullnode/full-sim.js';
export { LeaseLedger, simMaxClockRate } from './fullnode/sim-leases.js';
export type { LeaseFault, ReturnedRead } from './fullnode/sim-leases.js';
export { runFullNodeSchedule, fullScheduleForSeed, describeFullFailure, fullLivenessElectionTimeouts } from './fullnode/full-schedule.js';
export type { FullSchedule, FullFault, FullRunResult } from './fullnode/full-schedule.js';
export { checkRun, quiesce } from './fullnode/checks.js';
export type { CheckReport } from './fullnode/checks.js';
export type { WireItem, Interceptor, WireOptions } from './fullnode/sim-net.js';
export type { DiskFaults, DiskStats } from './fullnode/sim-fs.js';
export type { ApplyFault } from './fullnode/sim-master.js';
export { objectModel, defaultWorkload } from './fullnode/workload.js';
export type { WorkloadOptions, ObjectOp, ObjectOutput, ObjectState } from './fullnode/workload.js';
