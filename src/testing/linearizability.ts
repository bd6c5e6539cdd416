/**
 * Linearizability checker in the Wing–Gong / Lowe style, as porcupine does it: the history is partitioned by
 * key (linearizability is compositional), each key's operations become a doubly linked list of call and return
 * events in time order, and a depth-first search linearizes one pending call at a time, backtracking on a
 * return event it cannot pass. A cache of (linearized set, model state) prunes states already explored.
 *
 * Operations without a `return` (timeout, crash: outcome unknown) may take effect at any point after their call,
 * or never: they get a return time after every other event and an unknown output the model must accept, so the
 * search may linearize them last (which is the same as never: nothing observes them afterwards).
 */

/** One client operation. Times are any totally ordered numbers (the simulator uses a global event counter). */
export interface Operation<I = unknown, O = unknown> {
  clientId: number | string;
  /** A label for explanations ('get', 'put', ...). */
  op: string;
  key: string;
  input: I;
  /** Absent when the outcome is unknown. */
  output?: O;
  call: number;
  /** Absent when the outcome is unknown (the operation may or may not have taken effect). */
  return?: number;
}

/** A sequential specification. `step` receives `output === undefined` for an unknown outcome: accept any output. */
export interface Model<S, I, O> {
  init(): S;
  step(state: S, input: I, output: O | undefined): [boolean, S];
  /** A string that is equal for equal states (for the visited-state cache). */
  hash(state: S): string;
  /** True when the operation never changes the state: such operations with unknown outcome are dropped. */
  readOnly?(input: I): boolean;
  describeState?(state: S): string;
  describeOperation?(op: Operation<I, O>): string;
}

export interface CheckOptions {
  /**
   * Keys with more operations than this are not searched (reported in `inconclusiveKeys`): the search is
   * exponential in the worst case. 4000 operations per key is far above what a simulator run produces.
   */
  maxOperationsPerKey?: number;
  /** Search steps (linearize attempts + backtracks) per key before giving up as inconclusive. */
  maxStepsPerKey?: number;
}

export const defaultMaxOperationsPerKey = 4000;
/** Bounds time and the visited-state cache (about 100 bytes per state): ~1 s and ~100 MB at worst. */
export const defaultMaxStepsPerKey = 1_000_000;

export interface Counterexample {
  key: string;
  /** The shortest prefix of the key's history (by event time) that is not linearizable. */
  operations: Operation[];
  /** The operation whose return made the prefix non-linearizable. */
  culprit: Operation;
  /** The longest sequence of operations the search managed to linearize in that prefix. */
  bestLinearization: Operation[];
  explanation: string;
}

export interface CheckResult {
  /** False only when a violation was proven. */
  ok: boolean;
  counterexample?: Counterexample;
  /** Keys the bounded search could not decide (too many operations or too many steps). */
  inconclusiveKeys: string[];
}

interface Node<I, O> {
  /** Operation index within the key's list. */
  id: number;
  isCall: boolean;
  time: number;
  op: Operation<I, O>;
  match: Node<I, O> | null; // call → its return
  prev: Node<I, O> | null;
  next: Node<I, O> | null;
}

type SearchOutcome = { kind: 'ok' } | { kind: 'illegal'; best: number[] } | { kind: 'inconclusive' };

class Bitset {
  readonly words: Uint32Array;
  constructor(n: number) {
    this.words = new Uint32Array(Math.ceil(n / 32) || 1);
  }
  set(i: number): void {
    this.words[i >>> 5]! |= 1 << (i & 31);
  }
  clear(i: number): void {
    this.words[i >>> 5]! &= ~(1 << (i & 31));
  }
  key(): string {
    return String.fromCharCode(...new Uint16Array(this.words.buffer));
  }
}

/** Check one key's operations (all already belonging to the same partition). */
function searchKey<S, I, O>(ops: Operation<I, O>[], model: Model<S, I, O>, maxSteps: number): SearchOutcome {
  if (ops.length === 0) return { kind: 'ok' };
  // Unknown outcomes return after everything else.
  let maxTime = -Infinity;
  for (const o of ops) maxTime = Math.max(maxTime, o.call, o.return ?? -Infinity);
  const events: Node<I, O>[] = [];
  ops.forEach((op, id) => {
    const call: Node<I, O> = { id, isCall: true, time: op.call, op, match: null, prev: null, next: null };
    const ret: Node<I, O> = {
      id,
      isCall: false,
      time: op.return ?? maxTime + 1 + id,
      op,
      match: null,
      prev: null,
      next: null,
    };
    call.match = ret;
    events.push(call, ret);
  });
  // Time order; at equal times calls first, so operations touching at one instant count as concurrent.
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1));
  const head: Node<I, O> = { id: -1, isCall: false, time: -Infinity, op: ops[0]!, match: null, prev: null, next: null };
  let prev = head;
  for (const e of events) {
    prev.next = e;
    e.prev = prev;
    prev = e;
  }

  const lift = (call: Node<I, O>): void => {
    call.prev!.next = call.next;
    if (call.next) call.next.prev = call.prev;
    const ret = call.match!;
    ret.prev!.next = ret.next;
    if (ret.next) ret.next.prev = ret.prev;
  };
  const unlift = (call: Node<I, O>): void => {
    const ret = call.match!;
    ret.prev!.next = ret;
    if (ret.next) ret.next.prev = ret;
    call.prev!.next = call;
    if (call.next) call.next.prev = call;
  };

  const linearized = new Bitset(ops.length);
  const cache = new Set<string>();
  const stack: { call: Node<I, O>; state: S }[] = [];
  let state = model.init();
  let entry: Node<I, O> | null = head.next;
  let best: number[] = [];
  let steps = 0;
  while (head.next !== null) {
    if (++steps > maxSteps) return { kind: 'inconclusive' };
    if (entry === null) return { kind: 'inconclusive' }; // cannot happen: a return always ends the list
    if (entry.isCall) {
      const [ok, next] = model.step(state, entry.op.input, entry.op.output);
      if (ok) {
        linearized.set(entry.id);
        const k = linearized.key() + '\u0000' + model.hash(next);
        if (!cache.has(k)) {
          cache.add(k);
          stack.push({ call: entry, state });
          state = next;
          lift(entry);
          if (stack.length > best.length) best = stack.map((s) => s.call.id);
          entry = head.next;
          continue;
        }
        linearized.clear(entry.id);
      }
      entry = entry.next;
    } else {
      // A return whose call is still pending: undo the last choice.
      const top = stack.pop();
      if (!top) return { kind: 'illegal', best };
      state = top.state;
      linearized.clear(top.call.id);
      unlift(top.call);
      entry = top.call.next;
    }
  }
  return { kind: 'ok' };
}

function describe<S, I, O>(model: Model<S, I, O>, op: Operation<I, O>): string {
  if (model.describeOperation) return model.describeOperation(op);
  const out = op.return === undefined ? '?(unknown)' : JSON.stringify(op.output);
  return `client ${op.clientId}: ${op.op}(${JSON.stringify(op.input)}) -> ${out}`;
}

function fmtTime(t: number | undefined): string {
  return t === undefined ? '∞' : String(t);
}

/**
 * The shortest failing prefix. Linearizability is prefix-closed (a prefix of a linearizable history, with the
 * operations still running at the cut treated as unknown, is linearizable), so the failing prefixes are
 * monotone in their length and a binary search over the event cut finds the shortest one.
 */
function shortestFailingPrefix<S, I, O>(
  key: string,
  ops: Operation<I, O>[],
  model: Model<S, I, O>,
  maxSteps: number,
): Counterexample | null {
  const times = [...new Set(ops.flatMap((o) => (o.return === undefined ? [o.call] : [o.call, o.return])))].sort(
    (a, b) => a - b,
  );
  const prefixAt = (t: number): Operation<I, O>[] =>
    ops
      .filter((o) => o.call <= t)
      .map((o) => {
        if (o.return !== undefined && o.return <= t) return o;
        const { output: _o, return: _r, ...rest } = o;
        return rest as Operation<I, O>;
      })
      .filter((o) => !(o.return === undefined && model.readOnly?.(o.input)));
  let lo = 0;
  let hi = times.length - 1;
  let found: { t: number; best: number[] } | null = null;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const r = searchKey(prefixAt(times[mid]!), model, maxSteps);
    if (r.kind === 'illegal') {
      found = { t: times[mid]!, best: r.best };
      hi = mid - 1;
    } else {
      lo = mid + 1;
    }
  }
  if (!found) return null;
  const prefix = prefixAt(found.t);
  const culprit = prefix.find((o) => o.return === found!.t) ?? prefix[prefix.length - 1]!;
  const best = found.best.map((i) => prefix[i]!);
  const lines: string[] = [];
  lines.push(`key ${JSON.stringify(key)} is not linearizable.`);
  lines.push(`Shortest failing prefix (${prefix.length} operations, [call, return] times):`);
  for (const o of [...prefix].sort((a, b) => a.call - b.call)) {
    lines.push(`  [${fmtTime(o.call)}, ${fmtTime(o.return)}] ${describe(model, o)}${o === culprit ? '   <-- ' : ''}`);
  }
  lines.push(
    `No order of these operations respecting real time is legal for the sequential model once` +
      ` "${describe(model, culprit)}" returns at ${fmtTime(culprit.return)}.`,
  );
  if (best.length > 0) {
    lines.push(`Longest legal linearization found (${best.length} operations):`);
    let s = model.init();
    for (const o of best) {
      s = model.step(s, o.input, o.output)[1];
      lines.push(`  ${describe(model, o)}  => state ${model.describeState ? model.describeState(s) : model.hash(s)}`);
    }
  } else {
    lines.push('Not even the first operation can be linearized from the initial state.');
  }
  return { key, operations: prefix as Operation[], culprit: culprit as Operation, bestLinearization: best as Operation[], explanation: lines.join('\n') };
}

/** Check a history; see the module comment for the treatment of unknown outcomes. */
export function checkLinearizability<S, I, O>(
  history: readonly Operation<I, O>[],
  model: Model<S, I, O>,
  options: CheckOptions = {},
): CheckResult {
  const maxOps = options.maxOperationsPerKey ?? defaultMaxOperationsPerKey;
  const maxSteps = options.maxStepsPerKey ?? defaultMaxStepsPerKey;
  const byKey = new Map<string, Operation<I, O>[]>();
  for (const op of history) {
    if (op.return !== undefined && op.return < op.call) {
      throw new RangeError(`operation returns (${op.return}) before its call (${op.call})`);
    }
    // An unknown read changes nothing and constrains nothing.
    if (op.return === undefined && model.readOnly?.(op.input)) continue;
    let list = byKey.get(op.key);
    if (!list) byKey.set(op.key, (list = []));
    list.push(op.return === undefined ? withoutOutput(op) : op);
  }
  const inconclusiveKeys: string[] = [];
  for (const key of [...byKey.keys()].sort()) {
    const ops = byKey.get(key)!;
    if (ops.length > maxOps) {
      inconclusiveKeys.push(key);
      continue;
    }
    const r = searchKey(ops, model, maxSteps);
    if (r.kind === 'inconclusive') inconclusiveKeys.push(key);
    if (r.kind === 'illegal') {
      const counterexample = shortestFailingPrefix(key, ops, model, maxSteps) ?? {
        key,
        operations: ops as Operation[],
        culprit: ops[ops.length - 1] as Operation,
        bestLinearization: r.best.map((i) => ops[i]!) as Operation[],
        explanation: `key ${JSON.stringify(key)} is not linearizable (${ops.length} operations)`,
      };
      return { ok: false, counterexample, inconclusiveKeys };
    }
  }
  return { ok: true, inconclusiveKeys };
}

function withoutOutput<I, O>(op: Operation<I, O>): Operation<I, O> {
  if (!('output' in op)) return op;
  const { output: _o, ...rest } = op;
  return rest;
}

// ---------------------------------------------------------------------------------------------------------------
// A key-value register model: get / put / append / cas on one key (the checker partitions by key).

export type KvInput =
  | { kind: 'get' }
  | { kind: 'put'; value: string }
  | { kind: 'append'; value: string }
  | { kind: 'cas'; expected: string | null; value: string };

/** get → the value (null when absent); put/append → null; cas → whether it swapped. */
export type KvOutput = { value: string | null } | { ok: boolean } | null;

export type KvState = string | null;

export const kvModel: Model<KvState, KvInput, KvOutput> = {
  init: () => null,
  step(state, input, output) {
    switch (input.kind) {
      case 'get':
        if (output === undefined) return [true, state];
        return [output !== null && 'value' in output && output.value === state, state];
      case 'put':
        return [true, input.value];
      case 'append':
        return [true, (state ?? '') + input.value];
      case 'cas': {
        const swaps = state === input.expected;
        if (output !== undefined && (output === null || !('ok' in output) || output.ok !== swaps)) return [false, state];
        return [true, swaps ? input.value : state];
      }
    }
  },
  hash: (s) => (s === null ? '\u0001' : 's' + s),
  readOnly: (input) => input.kind === 'get',
  describeState: (s) => JSON.stringify(s),
  describeOperation(op) {
    const i = op.input;
    const args = i.kind === 'get' ? '' : i.kind === 'cas' ? `${JSON.stringify(i.expected)}, ${JSON.stringify(i.value)}` : JSON.stringify(i.value);
    const out = op.return === undefined ? '?(unknown outcome)' : JSON.stringify(op.output);
    return `client ${op.clientId}: ${i.kind}(${args}) -> ${out}`;
  },
};
