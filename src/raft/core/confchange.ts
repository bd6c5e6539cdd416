/**
 * Membership changes (etcd's confchange.Changer): simple changes (at most one voter added or removed),
 * entering a joint configuration, leaving it. Each operation returns a new config and progress map and never
 * mutates its inputs' sets; invalid changes throw MooringError INVALID_ARGUMENT.
 * Also: the msgpackr encoding of a ConfChange carried in a 'confChange' entry.
 */
import { Packr } from 'msgpackr';
import { assert, ErrorCode, MooringError } from '../../errors.js';
import { Progress, type InflightLimits } from './progress.js';
import { cloneTrackerConfig, isJoint, type TrackerConfig } from './tracker.js';
import type { ConfChange, ConfChangeSingle, ConfState, NodeId } from './types.js';

/** Longest node id accepted anywhere in the core (bytes of UTF-16 code units, approximately). */
export const MAX_NODE_ID_CHARS = 256;
/** Most single changes in one ConfChange. */
export const MAX_CONF_CHANGES_PER_ENTRY = 64;

export interface ChangeResult {
  config: TrackerConfig;
  progress: Map<NodeId, Progress>;
}

function invalid(msg: string): MooringError {
  return new MooringError(ErrorCode.INVALID_ARGUMENT, `conf change: ${msg}`);
}

export class Changer {
  constructor(
    private readonly config: TrackerConfig,
    private readonly progress: Map<NodeId, Progress>,
    private readonly lastIndex: number,
    private readonly window: InflightLimits,
  ) {}

  private copy(): ChangeResult {
    const progress = new Map<NodeId, Progress>();
    for (const [id, pr] of this.progress) progress.set(id, pr.clone());
    return { config: cloneTrackerConfig(this.config), progress };
  }

  /** Enters a joint config: the current voters become the outgoing half, `changes` build the incoming half. */
  enterJoint(autoLeave: boolean, changes: ConfChangeSingle[]): ChangeResult {
    if (isJoint(this.config)) throw invalid('already in a joint configuration');
    if (this.config.incoming.size === 0) throw invalid("can't make a zero-voter config joint");
    const r = this.copy();
    r.config.outgoing = new Set(r.config.incoming);
    this.apply(r, changes);
    r.config.autoLeave = autoLeave;
    return checkAndReturn(r);
  }

  /** Leaves the joint config: outgoing voters not kept become learners (learnersNext) or are dropped. */
  leaveJoint(): ChangeResult {
    if (!isJoint(this.config)) throw invalid("can't leave a non-joint configuration");
    const r = this.copy();
    for (const id of r.config.learnersNext) {
      r.config.learners.add(id);
      const pr = r.progress.get(id);
      assert(pr !== undefined, () => `learnerNext ${id} without progress`);
      pr.isLearner = true;
    }
    r.config.learnersNext = new Set();
    for (const id of r.config.outgoing) {
      if (!r.config.incoming.has(id) && !r.config.learners.has(id)) r.progress.delete(id);
    }
    r.config.outgoing = new Set();
    r.config.autoLeave = false;
    return checkAndReturn(r);
  }

  /** Applies changes that alter at most one voter, without a joint config. */
  simple(changes: ConfChangeSingle[]): ChangeResult {
    if (isJoint(this.config)) throw invalid("can't apply a simple change in a joint configuration");
    const r = this.copy();
    this.apply(r, changes);
    let diff = 0;
    for (const id of this.config.incoming) if (!r.config.incoming.has(id)) diff++;
    for (const id of r.config.incoming) if (!this.config.incoming.has(id)) diff++;
    if (diff > 1) throw invalid('more than one voter changed without entering a joint configuration');
    return checkAndReturn(r);
  }

  private apply(r: ChangeResult, changes: ConfChangeSingle[]): void {
    for (const cc of changes) {
      if (cc.node === '') continue;
      switch (cc.type) {
        case 'addVoter':
          this.makeVoter(r, cc.node);
          break;
        case 'addLearner':
          this.makeLearner(r, cc.node);
          break;
        case 'removeNode':
          this.remove(r, cc.node);
          break;
        default:
          throw invalid(`unknown change type ${String((cc as ConfChangeSingle).type)}`);
      }
    }
    if (r.config.incoming.size === 0) throw invalid('removed all voters');
  }

  private initProgress(r: ChangeResult, id: NodeId, isLearner: boolean): void {
    if (isLearner) r.config.learners.add(id);
    else r.config.incoming.add(id);
    // Probe from the last index; recentActive so check-quorum does not count a brand-new peer against us.
    const pr = new Progress(Math.max(this.lastIndex, 1), this.window, isLearner);
    pr.recentActive = true;
    r.progress.set(id, pr);
  }

  private makeVoter(r: ChangeResult, id: NodeId): void {
    const pr = r.progress.get(id);
    if (pr === undefined) {
      this.initProgress(r, id, false);
      return;
    }
    pr.isLearner = false;
    r.config.learners.delete(id);
    r.config.learnersNext.delete(id);
    r.config.incoming.add(id);
  }

  private makeLearner(r: ChangeResult, id: NodeId): void {
    const pr = r.progress.get(id);
    if (pr === undefined) {
      this.initProgress(r, id, true);
      return;
    }
    if (pr.isLearner) return;
    this.remove(r, id);
    r.progress.set(id, pr); // keep its progress
    if (r.config.outgoing.has(id)) {
      // Still a voter of the outgoing half: becomes a learner when the joint config is left.
      r.config.learnersNext.add(id);
    } else {
      pr.isLearner = true;
      r.config.learners.add(id);
    }
  }

  private remove(r: ChangeResult, id: NodeId): void {
    if (!r.progress.has(id)) return;
    r.config.incoming.delete(id);
    r.config.learners.delete(id);
    r.config.learnersNext.delete(id);
    if (!r.config.outgoing.has(id)) r.progress.delete(id);
  }
}

function checkAndReturn(r: ChangeResult): ChangeResult {
  const c = r.config;
  for (const set of [c.incoming, c.outgoing, c.learners, c.learnersNext]) {
    for (const id of set) assert(r.progress.has(id), () => `no progress for ${id}`);
  }
  for (const id of c.learnersNext) {
    assert(c.outgoing.has(id), () => `${id} is in learnersNext but not an outgoing voter`);
    assert(!r.progress.get(id)!.isLearner, () => `${id} is in learnersNext but already a learner`);
  }
  for (const id of c.learners) {
    assert(!c.outgoing.has(id) && !c.incoming.has(id), () => `${id} is both learner and voter`);
    assert(r.progress.get(id)!.isLearner, () => `${id} is a learner without the learner flag`);
  }
  if (!isJoint(c)) {
    assert(c.learnersNext.size === 0, 'learnersNext outside a joint config');
    assert(!c.autoLeave, 'autoLeave outside a joint config');
  }
  return r;
}

/** Builds the config (and fresh progress) described by a ConfState, e.g. at startup or on a snapshot. */
export function restoreConfState(cs: ConfState, lastIndex: number, window: InflightLimits): ChangeResult {
  const config: TrackerConfig = {
    incoming: new Set(cs.voters),
    outgoing: new Set(cs.votersOutgoing),
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
    autoLeave: cs.autoLeave,
  };
  const progress = new Map<NodeId, Progress>();
  const add = (id: NodeId, learner: boolean): void => {
    if (progress.has(id)) return;
    const pr = new Progress(lastIndex + 1, window, learner);
    pr.recentActive = true;
    progress.set(id, pr);
  };
  for (const id of config.incoming) add(id, false);
  for (const id of config.outgoing) add(id, false);
  for (const id of config.learners) add(id, true);
  return checkAndReturn({ config, progress });
}

/** Whether the change means "leave the joint configuration". */
export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

/** Whether the change is applied via a joint configuration; and if so whether it auto-leaves. */
export function jointMode(cc: ConfChange): { joint: boolean; autoLeave: boolean } {
  const t = cc.transition ?? 'auto';
  const joint = t !== 'auto' || cc.changes.length > 1;
  return { joint, autoLeave: joint && t !== 'jointExplicit' };
}

/** Applies `cc` to (config, progress); throws INVALID_ARGUMENT when the change is not allowed. */
export function applyChange(
  config: TrackerConfig,
  progress: Map<NodeId, Progress>,
  cc: ConfChange,
  lastIndex: number,
  window: InflightLimits,
): ChangeResult {
  const ch = new Changer(config, progress, lastIndex, window);
  if (isLeaveJoint(cc)) return ch.leaveJoint();
  const { joint, autoLeave } = jointMode(cc);
  return joint ? ch.enterJoint(autoLeave, cc.changes) : ch.simple(cc.changes);
}

// ---- entry encoding ----

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeConfChange(cc: ConfChange): Uint8Array {
  const plain: { c: [string, string][]; t?: string } = { c: cc.changes.map((s) => [s.type, s.node]) };
  if (cc.transition !== undefined) plain.t = cc.transition;
  return packr.pack(plain);
}

const CHANGE_TYPES = new Set(['addVoter', 'addLearner', 'removeNode']);
const TRANSITIONS = new Set(['auto', 'joint', 'jointExplicit']);

/** Decodes (and validates) a ConfChange; throws MALFORMED_FRAME on anything else. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  let v: unknown;
  try {
    v = packr.unpack(data);
  } catch (e) {
    throw new MooringError(ErrorCode.MALFORMED_FRAME, 'conf change does not decode', { cause: e });
  }
  const bad = (m: string): MooringError => new MooringError(ErrorCode.MALFORMED_FRAME, `conf change: ${m}`);
  if (typeof v !== 'object' || v === null) throw bad('not an object');
  const o = v as { c?: unknown; t?: unknown };
  if (!Array.isArray(o.c) || o.c.length > MAX_CONF_CHANGES_PER_ENTRY) throw bad('bad change list');
  const changes: ConfChangeSingle[] = [];
  for (const x of o.c) {
    if (!Array.isArray(x) || x.length !== 2) throw bad('bad change');
    const [type, node] = x as unknown[];
    if (typeof type !== 'string' || !CHANGE_TYPES.has(type)) throw bad('bad change type');
    if (typeof node !== 'string' || node.length === 0 || node.length > MAX_NODE_ID_CHARS) throw bad('bad node id');
    changes.push({ type: type as ConfChangeSingle['type'], node });
  }
  const cc: ConfChange = { changes };
  if (o.t !== undefined) {
    if (typeof o.t !== 'string' || !TRANSITIONS.has(o.t)) throw bad('bad transition');
    cc.transition = o.t as NonNullable<ConfChange['transition']>;
  }
  return cc;
}
