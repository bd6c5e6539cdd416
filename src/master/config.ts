/**
 * Master configuration: YAML file < environment (`MOORING_<FIELD>`) < flag overrides, then validated.
 *
 * Validation collects every problem (each names its field path) and throws one ConfigError
 * (a MooringError with code INVALID_CONFIG) listing them all, so an operator fixes a file in one pass.
 * Unknown keys are errors: a typo must never silently fall back to a default.
 *
 * API: `loadConfig({file?, env?, overrides?})`, `parseConfig(yamlTextOrObject)`, `defaultConfig`,
 * `redactConfig(cfg)`, `toRaftCoreOptions(cfg)`, `listConfigFields()`. The reference for every field is docs/configuration.md.
 */
import { accessSync, constants as fsConstants, readFileSync } from 'node:fs';
import nodePath from 'node:path';
import { parseDocument } from 'yaml';
import { ErrorCode, MooringError } from '../errors.js';
import { raftDefaults, toCoreOptions, type CoreOptions, type RaftTunables } from '../raft/node/options.js';
import { FOLLOWER_LEASE_MARGIN_TICKS } from '../raft/core/follower-lease.js';
import { defaultIdleTimeoutMs, defaultMaxConnectionsPerAddress, defaultMaxInboundConnections } from '../transport/conn-budget.js';
import { handshakeTimeoutMs } from '../transport/handshake.js';
import { defaultRepairLimits, type RepairLimits } from './repair.js';

export type { ReadMode } from '../raft/node/options.js';
import type { ReadMode } from '../raft/node/options.js';
export type PlacementStrategy = 'random' | 'free-ratio-first' | 'zone-spread';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export const READ_MODES: readonly ReadMode[] = ['lease', 'readIndex'];
export const PLACEMENT_STRATEGIES: readonly PlacementStrategy[] = ['random', 'free-ratio-first', 'zone-spread'];
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface PeerConfig {
  id: string;
  host: string;
  raftPort: number;
  rpcPort: number;
  /** null when the peer's ops HTTP port is not known (it is only used for links in /status). */
  httpPort: number | null;
}

export interface TlsConfig {
  cert: string;
  key: string;
  ca: string | null;
  requireClientCert: boolean;
}

/** The fully resolved configuration: every field present, every default applied, every check passed. */
export interface MasterConfig {
  nodeId: string;
  clusterId: string;
  /** Default `./data/<nodeId>` (relative paths are relative to the process's working directory). */
  dataDir: string;
  listen: { host: string; raftPort: number; rpcPort: number; httpPort: number };
  /** The host peers and clients use to reach this node. Default: listen.host. */
  advertiseHost: string;
  /**
   * Initial voters, including this node. When the file gives none and join is false, this holds exactly one
   * entry: this node (single-node cluster). When join is true: the existing members to contact.
   */
  peers: PeerConfig[];
  join: boolean;
  raft: {
    tickMs: number;
    electionTimeoutTicks: number;
    heartbeatIntervalTicks: number;
    preVote: boolean;
    checkQuorum: boolean;
    /** Pre-vote at once when the leader's connection resets (needs preVote and checkQuorum; off without them). */
    fastFailover: boolean;
    readMode: ReadMode;
    /** Follower read leases in ticks (0 = off; see src/raft/node/options.ts and docs/raft.md). */
    followerLeaseTicks: number;
    maxEntriesPerAppend: number;
    maxBytesPerAppend: number;
    maxInflightAppends: number;
    /** Unacknowledged entry bytes per follower: bounds what one round sends a follower that is far behind. */
    maxInflightBytes: number;
    /** WAL saves in flight in the Ready loop (1 = serial; see src/raft/node/options.ts). */
    maxInflightSaves: number;
    snapshotEveryEntries: number;
    maxFrameBytes: number;
    proposalTimeoutMs: number;
    /** Backpressure: the leader refuses writes with BUSY while its oldest pending write has waited longer than this. */
    maxProposalWaitMs: number;
  };
  leaseTtlMs: number;
  clientTtlMs: number;
  putStartReclaimMs: number;
  eviction: { highWatermark: number; target: number; checkIntervalMs: number };
  placement: { strategy: PlacementStrategy };
  tls: TlsConfig | null;
  /** The admin token itself (read from adminTokenFile when that is given); null = admin RPCs unauthenticated. */
  adminToken: string | null;
  adminTokenFile: string | null;
  /**
   * Shared secret every peer presents in its handshake (read from peerTokenFile when that is given). Peers must
   * authenticate: by this token or by mTLS (tls.requireClientCert); otherwise only with `insecure: true`.
   */
  peerToken: string | null;
  peerTokenFile: string | null;
  /** Run without peer authentication (any host that can reach the peer port can join the consensus). */
  insecure: boolean;
  /** Connection budgets of the peer, RPC and HTTP ports (see docs/configuration.md). */
  limits: {
    maxConnectionsPerAddress: number;
    maxInboundConnections: number;
    handshakeTimeoutMs: number;
    idleTimeoutMs: number;
  };
  clientRetry: { initialBackoffMs: number; maxBackoffMs: number; maxAttempts: number; requestTimeoutMs: number };
  /** Re-replication after a storage node dies (leader side, src/master/repair.ts). */
  repair: RepairLimits;
  log: { level: LogLevel; pretty: boolean };
}

/** Defaults for every field that has one (nodeId has none; dataDir and advertiseHost derive from others). */
export type DefaultConfig = Omit<MasterConfig, 'nodeId' | 'dataDir' | 'advertiseHost'>;

const MiB = 1024 * 1024;

export const defaultConfig: DefaultConfig = deepFreeze({
  clusterId: 'mooring',
  listen: { host: '127.0.0.1', raftPort: 7400, rpcPort: 50051, httpPort: 9003 },
  peers: [],
  join: false,
  raft: {
    // The Raft tunables' defaults are declared once, in src/raft/node/options.ts.
    tickMs: raftDefaults.tickMs,
    electionTimeoutTicks: raftDefaults.electionTimeoutTicks,
    heartbeatIntervalTicks: raftDefaults.heartbeatIntervalTicks,
    preVote: raftDefaults.preVote,
    checkQuorum: raftDefaults.checkQuorum,
    fastFailover: raftDefaults.fastFailover,
    readMode: raftDefaults.readMode,
    followerLeaseTicks: raftDefaults.followerLeaseTicks,
    maxEntriesPerAppend: raftDefaults.maxEntriesPerAppend,
    maxBytesPerAppend: raftDefaults.maxBytesPerAppend,
    maxInflightAppends: raftDefaults.maxInflightAppends,
    maxInflightBytes: raftDefaults.maxInflightBytes,
    maxInflightSaves: raftDefaults.maxInflightSaves,
    snapshotEveryEntries: raftDefaults.snapshotEveryEntries,
    maxFrameBytes: 16 * MiB,
    proposalTimeoutMs: raftDefaults.proposalTimeoutMs,
    maxProposalWaitMs: raftDefaults.maxProposalWaitMs,
  },
  leaseTtlMs: 10_000,
  clientTtlMs: 10_000,
  putStartReclaimMs: 600_000,
  eviction: { highWatermark: 0.85, target: 0.75, checkIntervalMs: 10 },
  placement: { strategy: 'random' },
  tls: null,
  adminToken: null,
  adminTokenFile: null,
  peerToken: null,
  peerTokenFile: null,
  insecure: false,
  limits: { maxConnectionsPerAddress: defaultMaxConnectionsPerAddress, maxInboundConnections: defaultMaxInboundConnections, handshakeTimeoutMs, idleTimeoutMs: defaultIdleTimeoutMs },
  clientRetry: { initialBackoffMs: 100, maxBackoffMs: 5000, maxAttempts: 3, requestTimeoutMs: 2000 },
  // The repair limits' defaults are declared once, in src/master/repair.ts.
  repair: { ...defaultRepairLimits },
  log: { level: 'info', pretty: false },
});

// ---------------------------------------------------------------------------------------------------------------
// Schema. One table drives unknown-key detection, type checks, env var names and listConfigFields().

/** Node ids appear in paths (default dataDir) and metric labels, so they are kept to a safe alphabet. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID_RULE = 'must be 1–64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit';
const MAX_PORT = 65535;
/** Upper bounds keep obviously wrong values (ms typed as µs, bytes as bits) out; they are generous. */
const MAX_MS = 24 * 3600 * 1000;
const MAX_TICKS = 100_000;
const MIN_FRAME_BYTES = 64 * 1024;
const MAX_FRAME_BYTES = 1024 * MiB;
const MAX_PATH_CHARS = 4096;
/** 1 TiB/s: more than any copy path moves; a larger value is a unit mistake (bits, or a count of something else). */
const MAX_BYTES_PER_SECOND = 1024 * 1024 * MiB;
const MAX_TOKEN_CHARS = 4096;
/** The peer handshake carries at most this many token characters (transport/handshake.ts maxHelloFieldChars). */
const MAX_PEER_TOKEN_CHARS = 256;

type Leaf =
  | { t: 'int'; min: number; max: number }
  | { t: 'num'; min: number; max: number; minOpen?: boolean; maxOpen?: boolean }
  | { t: 'bool' }
  | { t: 'str'; pattern?: RegExp; rule?: string; maxChars: number }
  | { t: 'enum'; values: readonly string[] };
type SchemaNode = Leaf | { t: 'obj'; fields: Record<string, SchemaNode> } | { t: 'peers' };

const int = (min: number, max: number = Number.MAX_SAFE_INTEGER): Leaf => ({ t: 'int', min, max });
const bool: Leaf = { t: 'bool' };
const path: Leaf = { t: 'str', maxChars: MAX_PATH_CHARS };
const host: Leaf = { t: 'str', pattern: /^[^\s/]+$/, rule: 'must be a host name or IP address', maxChars: 255 };
const id: Leaf = { t: 'str', pattern: ID_PATTERN, rule: ID_RULE, maxChars: 64 };

const PEER_FIELDS: Record<string, SchemaNode> = {
  id,
  host,
  raftPort: int(1, MAX_PORT),
  rpcPort: int(1, MAX_PORT),
  httpPort: int(1, MAX_PORT),
};

const SCHEMA: Record<string, SchemaNode> = {
  nodeId: id,
  clusterId: id,
  dataDir: path,
  listen: {
    t: 'obj',
    fields: { host, raftPort: int(0, MAX_PORT), rpcPort: int(0, MAX_PORT), httpPort: int(0, MAX_PORT) },
  },
  advertiseHost: host,
  peers: { t: 'peers' },
  join: bool,
  raft: {
    t: 'obj',
    fields: {
      tickMs: int(1, 60_000),
      electionTimeoutTicks: int(3, MAX_TICKS),
      heartbeatIntervalTicks: int(1, MAX_TICKS),
      preVote: bool,
      checkQuorum: bool,
      fastFailover: bool,
      readMode: { t: 'enum', values: READ_MODES },
      followerLeaseTicks: int(0, MAX_TICKS),
      maxEntriesPerAppend: int(1, 1_000_000),
      maxBytesPerAppend: int(1, MAX_FRAME_BYTES),
      maxInflightAppends: int(1, 1_000_000),
      maxInflightBytes: int(1, 1024 * MiB),
      maxInflightSaves: int(1, 64),
      snapshotEveryEntries: int(1),
      maxFrameBytes: int(MIN_FRAME_BYTES, MAX_FRAME_BYTES),
      proposalTimeoutMs: int(1, MAX_MS),
      maxProposalWaitMs: int(1, MAX_MS),
    },
  },
  leaseTtlMs: int(1, MAX_MS),
  // At least one housekeeping interval (client-expiry.ts): a shorter TTL would expire clients between two checks.
  clientTtlMs: int(1_000, MAX_MS),
  putStartReclaimMs: int(0, MAX_MS),
  eviction: {
    t: 'obj',
    fields: {
      highWatermark: { t: 'num', min: 0, max: 1, minOpen: true },
      target: { t: 'num', min: 0, max: 1, maxOpen: true },
      checkIntervalMs: int(1, MAX_MS),
    },
  },
  placement: { t: 'obj', fields: { strategy: { t: 'enum', values: PLACEMENT_STRATEGIES } } },
  tls: { t: 'obj', fields: { cert: path, key: path, ca: path, requireClientCert: bool } },
  adminToken: { t: 'str', pattern: /^\S+$/, rule: 'must not be empty or contain whitespace', maxChars: MAX_TOKEN_CHARS },
  adminTokenFile: path,
  peerToken: { t: 'str', pattern: /^\S+$/, rule: 'must not be empty or contain whitespace', maxChars: MAX_PEER_TOKEN_CHARS },
  peerTokenFile: path,
  insecure: bool,
  limits: {
    t: 'obj',
    fields: {
      maxConnectionsPerAddress: int(1, 1_000_000),
      maxInboundConnections: int(1, 1_000_000),
      handshakeTimeoutMs: int(1, MAX_MS),
      idleTimeoutMs: int(1, MAX_MS),
    },
  },
  clientRetry: {
    t: 'obj',
    fields: {
      initialBackoffMs: int(1, MAX_MS),
      maxBackoffMs: int(1, MAX_MS),
      maxAttempts: int(1, 1000),
      requestTimeoutMs: int(1, MAX_MS),
    },
  },
  repair: {
    t: 'obj',
    fields: {
      maxInFlight: int(1, 1_000_000),
      bytesPerSecond: int(1, MAX_BYTES_PER_SECOND),
      taskTimeoutMs: int(1, MAX_MS),
      resendMs: int(1, MAX_MS),
      scanIntervalMs: int(1, MAX_MS),
      scanObjectsPerRound: int(1, 100_000_000),
    },
  },
  log: { t: 'obj', fields: { level: { t: 'enum', values: LOG_LEVELS }, pretty: bool } },
};

/**
 * Snake_case names Mooncake operators know, accepted at the top level of a file or overrides object.
 * `scale` converts units (Mooncake's client_ttl is in seconds; ours is in milliseconds).
 */
const ALIASES: Record<string, { path: string[]; scale?: number; values?: Record<string, string> }> = {
  default_kv_lease_ttl: { path: ['leaseTtlMs'] },
  client_ttl: { path: ['clientTtlMs'], scale: 1000 },
  eviction_high_watermark_ratio: { path: ['eviction', 'highWatermark'] },
  cluster_id: { path: ['clusterId'] },
  rpc_address: { path: ['listen', 'host'] },
  rpc_port: { path: ['listen', 'rpcPort'] },
  metrics_port: { path: ['listen', 'httpPort'] },
  allocation_strategy: { path: ['placement', 'strategy'], values: { free_ratio_first: 'free-ratio-first' } },
};

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** The one error configuration problems produce. `problems` holds one line per problem, each naming a field. */
export class ConfigError extends MooringError {
  readonly problems: string[];
  constructor(problems: string[], source?: string) {
    const head = `invalid configuration${source ? ` (${source})` : ''}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`;
    super(ErrorCode.INVALID_CONFIG, [head, ...problems.map((p) => `  ${p}`)].join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

class Problems {
  readonly list: string[] = [];
  /** Where each path's value came from when not the file: `MOORING_X` or `override`. */
  readonly origin = new Map<string, string>();
  add(path: string, problem: string): void {
    const from = this.origin.get(path);
    this.list.push(`config: ${path || '(root)'} ${problem}${from ? ` (from ${from})` : ''}`);
  }
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  let s: string;
  try {
    s = typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? 'a list' : typeof value === 'object' && value !== null ? 'a mapping' : String(value);
  } catch {
    s = typeof value;
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

// ---------------------------------------------------------------------------------------------------------------
// Layers: each source becomes a plain nested object of raw values; later layers win leaf by leaf.

type Raw = Record<string, unknown>;

function isPlainObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function joinPath(base: string, key: string | number): string {
  return typeof key === 'number' ? `${base}[${key}]` : base ? `${base}.${key}` : key;
}

/** Rewrites top-level aliases into their canonical places; reports an alias given together with its field. */
function applyAliases(obj: Raw, problems: Problems, originLabel?: string): Raw {
  const out: Raw = { ...obj };
  for (const [alias, spec] of Object.entries(ALIASES)) {
    if (!Object.prototype.hasOwnProperty.call(out, alias)) continue;
    let value = out[alias];
    delete out[alias];
    const canonical = spec.path.join('.');
    let parent: Raw = out;
    for (const seg of spec.path.slice(0, -1)) {
      if (parent[seg] === undefined || parent[seg] === null) parent[seg] = {};
      if (!isPlainObject(parent[seg])) {
        problems.add(alias, `cannot be applied: ${spec.path.slice(0, -1).join('.')} is not a mapping`);
        parent = {};
        break;
      }
      parent = parent[seg] = { ...(parent[seg] as Raw) };
    }
    const last = spec.path[spec.path.length - 1]!;
    if (parent[last] !== undefined) {
      problems.add(alias, `is an alias of ${canonical}; give only one of them`);
      continue;
    }
    if (spec.scale !== undefined) {
      const n = typeof value === 'string' ? coerceNumber(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n)) {
        problems.add(alias, `must be a number, got ${show(value)}`);
        continue;
      }
      value = Math.round(n * spec.scale);
    }
    if (spec.values && typeof value === 'string' && Object.hasOwn(spec.values, value)) value = spec.values[value];
    if (originLabel) problems.origin.set(canonical, `${originLabel} ${alias}`);
    else problems.origin.set(canonical, alias);
    parent[last] = value;
  }
  return out;
}

function coerceNumber(s: string): number | string {
  const t = s.trim();
  return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : s;
}

function coerceBool(s: string): boolean | string {
  const t = s.trim().toLowerCase();
  if (t === 'true' || t === '1' || t === 'yes' || t === 'on') return true;
  if (t === 'false' || t === '0' || t === 'no' || t === 'off') return false;
  return s;
}

/** Strings from env vars and CLI flags are converted to the field's type; YAML values are taken as typed. */
function coerceString(leaf: Leaf, s: string): unknown {
  if (leaf.t === 'int' || leaf.t === 'num') return coerceNumber(s);
  if (leaf.t === 'bool') return coerceBool(s);
  return s;
}

function leafAt(segments: string[]): Leaf | undefined {
  let fields: Record<string, SchemaNode> | undefined = SCHEMA;
  let node: SchemaNode | undefined;
  for (const seg of segments) {
    if (!fields) return undefined;
    node = Object.hasOwn(fields, seg) ? fields[seg] : undefined;
    if (!node) return undefined;
    fields = node.t === 'obj' ? node.fields : undefined;
  }
  return node && node.t !== 'obj' && node.t !== 'peers' ? node : undefined;
}

function envName(segments: string[]): string {
  return 'MOORING_' + segments.map((s) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

interface FieldInfo {
  /** Dotted path, e.g. `raft.tickMs`. */
  path: string;
  /** Environment variable that overrides it, or null for non-scalar fields (peers). */
  envVar: string | null;
  kind: 'int' | 'number' | 'bool' | 'string' | 'enum' | 'peers';
}

/** Every configurable field with its env var (used by docs, tests and `--help`). */
export function listConfigFields(): FieldInfo[] {
  const out: FieldInfo[] = [];
  const walk = (fields: Record<string, SchemaNode>, prefix: string[]): void => {
    for (const [k, node] of Object.entries(fields)) {
      const segs = [...prefix, k];
      if (node.t === 'obj') walk(node.fields, segs);
      else if (node.t === 'peers') out.push({ path: segs.join('.'), envVar: null, kind: 'peers' });
      else {
        const kind = node.t === 'num' ? 'number' : node.t === 'str' ? 'string' : node.t;
        out.push({ path: segs.join('.'), envVar: envName(segs), kind });
      }
    }
  };
  walk(SCHEMA, []);
  return out;
}

/** `MOORING_<FIELD>` variables for scalar fields. Empty values count as unset; unknown MOORING_ names are ignored
 * (other parts of Mooring own a few, e.g. MOORING_REQUIRE_NATIVE). */
function envLayer(env: Record<string, string | undefined>, problems: Problems): Raw {
  const out: Raw = {};
  for (const f of listConfigFields()) {
    if (!f.envVar) continue;
    const v = env[f.envVar];
    if (v === undefined || v === '') continue;
    const segs = f.path.split('.');
    setAt(out, segs, coerceString(leafAt(segs)!, v));
    problems.origin.set(f.path, f.envVar);
  }
  return out;
}

function setAt(obj: Raw, segs: string[], value: unknown): void {
  const define = (o: Raw, k: string, v: unknown): void =>
    void Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  let cur = obj;
  for (const seg of segs.slice(0, -1)) {
    if (!Object.hasOwn(cur, seg) || !isPlainObject(cur[seg])) define(cur, seg, {});
    cur = cur[seg] as Raw;
  }
  define(cur, segs[segs.length - 1]!, value);
}

/** Flag overrides: a nested partial config and/or dotted keys (`'raft.tickMs': '10'`); undefined = not given. */
function overridesLayer(overrides: Raw, problems: Problems): Raw {
  const nested: Raw = {};
  const put = (segs: string[], value: unknown): void => {
    if (value === undefined) return;
    if (isPlainObject(value) && !(segs.length === 1 && Object.hasOwn(ALIASES, segs[0]!))) {
      for (const [k, v] of Object.entries(value)) put([...segs, ...k.split('.')], v);
      return;
    }
    const leaf = leafAt(segs);
    setAt(nested, segs, leaf && typeof value === 'string' ? coerceString(leaf, value) : value);
    problems.origin.set(segs.join('.'), 'override');
  };
  for (const [k, v] of Object.entries(overrides)) {
    if (Object.hasOwn(ALIASES, k)) {
      if (v !== undefined) nested[k] = v;
    } else put(k.split('.'), v);
  }
  return applyAliases(nested, problems, 'override');
}

function mergeLayers(base: Raw, top: Raw): Raw {
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(top)) {
    // peers (a list) is replaced whole; mappings merge key by key.
    const value = isPlainObject(v) && isPlainObject(out[k]) ? mergeLayers(out[k] as Raw, v) : v;
    // defineProperty: a key named "__proto__" stays a plain (reported-as-unknown) key, never a prototype.
    Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Validation

function checkLeaf(leaf: Leaf, value: unknown, p: string, problems: Problems): unknown {
  switch (leaf.t) {
    case 'int': {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < leaf.min || value > leaf.max) {
        const range = leaf.max >= Number.MAX_SAFE_INTEGER ? `≥ ${leaf.min}` : `≥ ${leaf.min} and ≤ ${leaf.max}`;
        problems.add(p, `must be an integer ${range}, got ${show(value)}`);
        return undefined;
      }
      return value;
    }
    case 'num': {
      const lowOk = typeof value === 'number' && (leaf.minOpen ? value > leaf.min : value >= leaf.min);
      const highOk = typeof value === 'number' && (leaf.maxOpen ? value < leaf.max : value <= leaf.max);
      if (typeof value !== 'number' || !Number.isFinite(value) || !lowOk || !highOk) {
        const range = `${leaf.minOpen ? '(' : '['}${leaf.min}, ${leaf.max}${leaf.maxOpen ? ')' : ']'}`;
        problems.add(p, `must be a number in ${range}, got ${show(value)}`);
        return undefined;
      }
      return value;
    }
    case 'bool':
      if (typeof value !== 'boolean') {
        problems.add(p, `must be true or false, got ${show(value)}`);
        return undefined;
      }
      return value;
    case 'enum':
      if (typeof value !== 'string' || !leaf.values.includes(value)) {
        problems.add(p, `must be one of ${leaf.values.map((v) => `'${v}'`).join(', ')}, got ${show(value)}`);
        return undefined;
      }
      return value;
    case 'str':
      if (typeof value !== 'string' || value.length === 0) {
        problems.add(p, `must be a non-empty string, got ${show(value)}`);
        return undefined;
      }
      if (value.length > leaf.maxChars) {
        problems.add(p, `must be at most ${leaf.maxChars} characters, got ${value.length}`);
        return undefined;
      }
      if (leaf.pattern && !leaf.pattern.test(value)) {
        problems.add(p, `${leaf.rule ?? 'has an invalid format'}, got ${show(value)}`);
        return undefined;
      }
      return value;
  }
}

/** Checks a mapping against its fields; returns only the keys that were given (null counts as not given). */
function checkObject(fields: Record<string, SchemaNode>, value: unknown, p: string, problems: Problems): Raw | undefined {
  if (!isPlainObject(value)) {
    problems.add(p, `must be a mapping, got ${show(value)}`);
    return undefined;
  }
  const out: Raw = {};
  for (const [k, v] of Object.entries(value)) {
    const kp = joinPath(p, k);
    const node = Object.hasOwn(fields, k) ? fields[k] : undefined;
    if (!node) {
      const hint = suggest(k, Object.keys(fields));
      problems.add(kp, `is not a known setting${hint ? ` (did you mean ${joinPath(p, hint)}?)` : ''}`);
      continue;
    }
    if (v === null || v === undefined) continue;
    let checked: unknown;
    if (node.t === 'obj') checked = checkObject(node.fields, v, kp, problems);
    else if (node.t === 'peers') checked = checkPeers(v, kp, problems);
    else checked = checkLeaf(node, v, kp, problems);
    out[k] = checked === undefined ? INVALID : checked;
  }
  return out;
}

/** Marks a field that failed its own check, so cross-field checks skip it instead of reporting twice. */
const INVALID = Symbol('invalid');

function checkPeers(value: unknown, p: string, problems: Problems): PeerConfig[] | undefined {
  if (!Array.isArray(value)) {
    problems.add(p, `must be a list of {id, host, raftPort, rpcPort, httpPort?}, got ${show(value)}`);
    return undefined;
  }
  const out: PeerConfig[] = [];
  const ids = new Map<string, number>();
  const addrs = new Map<string, string>();
  let ok = true;
  value.forEach((item, i) => {
    const ip = joinPath(p, i);
    const obj = checkObject(PEER_FIELDS, item, ip, problems);
    if (!obj) return void (ok = false);
    for (const req of ['id', 'host', 'raftPort', 'rpcPort']) {
      if (obj[req] === undefined) {
        problems.add(joinPath(ip, req), 'is required');
        ok = false;
      }
    }
    if (Object.values(obj).includes(INVALID)) ok = false;
    // Uniqueness is checked on whatever fields are valid, even when other entries have problems.
    if (typeof obj.id === 'string') {
      const prev = ids.get(obj.id);
      if (prev !== undefined) problems.add(joinPath(ip, 'id'), `duplicates peers[${prev}].id (${JSON.stringify(obj.id)})`);
      else ids.set(obj.id, i);
    }
    for (const k of ['raftPort', 'rpcPort', 'httpPort']) {
      if (typeof obj.host !== 'string' || typeof obj[k] !== 'number') continue;
      const addr = `${obj.host}:${obj[k] as number}`;
      const where = `${joinPath(ip, k)}`;
      const clash = addrs.get(addr);
      if (clash) problems.add(where, `reuses address ${addr} already given as ${clash}`);
      else addrs.set(addr, where);
    }
    out.push({
      id: obj.id as string,
      host: obj.host as string,
      raftPort: obj.raftPort as number,
      rpcPort: obj.rpcPort as number,
      httpPort: (obj.httpPort as number | undefined) ?? null,
    });
  });
  return ok ? out : undefined;
}

function suggest(key: string, known: string[]): string | undefined {
  const k = key.toLowerCase().replace(/[_-]/g, '');
  return known.find((c) => c.toLowerCase() === k) ?? known.find((c) => editDistance(c.toLowerCase(), key.toLowerCase()) <= 2);
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

function readable(file: string): string | null {
  try {
    accessSync(file, fsConstants.R_OK);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'unreadable';
  }
}

/** Given-and-valid value at a path, or the default. INVALID propagates so dependent checks can skip. */
function pick<T>(given: Raw | undefined, key: string, def: T): T | typeof INVALID {
  if (!given || given[key] === undefined) return def;
  return given[key] as T | typeof INVALID;
}

function resolve(merged: Raw, problems: Problems): MasterConfig | undefined {
  const g = checkObject(SCHEMA, merged, '', problems) ?? {};
  const sub = (k: string): Raw | undefined => (isPlainObject(g[k]) ? (g[k] as Raw) : undefined);
  const fill = <T extends object>(k: string, defaults: T): T => {
    const s = sub(k);
    const out: Record<string, unknown> = {};
    for (const [f, d] of Object.entries(defaults)) out[f] = pick(s, f, d);
    return out as T;
  };

  if (g.nodeId === undefined) problems.add('nodeId', `is required (set it in the file, with ${envName(['nodeId'])} or a flag override)`);
  const nodeId = g.nodeId as string;
  const listen = fill('listen', defaultConfig.listen);
  const raft = fill('raft', defaultConfig.raft);
  const eviction = fill('eviction', defaultConfig.eviction);
  const clientRetry = fill('clientRetry', defaultConfig.clientRetry);
  const repair = fill('repair', defaultConfig.repair);
  const join = pick(g, 'join', defaultConfig.join);
  const advertiseHost = pick(g, 'advertiseHost', listen.host);
  const peersGiven = pick<PeerConfig[]>(g, 'peers', []);
  const ok = (...vs: unknown[]): boolean => vs.every((v) => v !== INVALID && v !== undefined);

  // Listening ports must not collide (0 = ephemeral, used by tests, may repeat).
  const portKeys = ['raftPort', 'rpcPort', 'httpPort'] as const;
  for (let i = 0; i < portKeys.length; i++)
    for (let j = i + 1; j < portKeys.length; j++) {
      const a = listen[portKeys[i]!], b = listen[portKeys[j]!];
      if (ok(a, b) && a !== 0 && a === b)
        problems.add(`listen.${portKeys[j]}`, `must differ from listen.${portKeys[i]} (both ${a})`);
    }

  if (ok(raft.heartbeatIntervalTicks, raft.electionTimeoutTicks) && raft.heartbeatIntervalTicks >= raft.electionTimeoutTicks)
    problems.add('raft.heartbeatIntervalTicks', `must be less than raft.electionTimeoutTicks (${raft.electionTimeoutTicks}), got ${raft.heartbeatIntervalTicks}`);
  // A lease read is only safe when a leader that lost its quorum steps down in time.
  if (raft.readMode === 'lease' && raft.checkQuorum === false)
    problems.add('raft.readMode', `'lease' requires raft.checkQuorum: true (use 'readIndex' without check-quorum)`);
  if (ok(raft.followerLeaseTicks, raft.electionTimeoutTicks) && raft.followerLeaseTicks > 0) {
    if (raft.readMode !== 'lease') problems.add('raft.followerLeaseTicks', `needs raft.readMode 'lease', got '${String(raft.readMode)}'`);
    if (raft.followerLeaseTicks + FOLLOWER_LEASE_MARGIN_TICKS >= raft.electionTimeoutTicks)
      problems.add('raft.followerLeaseTicks', `must be at most raft.electionTimeoutTicks - ${FOLLOWER_LEASE_MARGIN_TICKS + 1} (${raft.electionTimeoutTicks - FOLLOWER_LEASE_MARGIN_TICKS - 1}), got ${raft.followerLeaseTicks}`);
    else if (ok(raft.heartbeatIntervalTicks) && raft.heartbeatIntervalTicks >= raft.followerLeaseTicks)
      problems.add('raft.followerLeaseTicks', `must be more than raft.heartbeatIntervalTicks (${raft.heartbeatIntervalTicks}): the lease would lapse between heartbeats, got ${raft.followerLeaseTicks}`);
  }
  if (ok(raft.maxBytesPerAppend, raft.maxFrameBytes) && raft.maxBytesPerAppend >= raft.maxFrameBytes)
    problems.add('raft.maxBytesPerAppend', `must be less than raft.maxFrameBytes (${raft.maxFrameBytes}) so an append fits in one frame, got ${raft.maxBytesPerAppend}`);
  if (ok(eviction.target, eviction.highWatermark) && eviction.target >= eviction.highWatermark)
    problems.add('eviction.target', `must be less than eviction.highWatermark (${eviction.highWatermark}), got ${eviction.target}`);
  if (ok(clientRetry.initialBackoffMs, clientRetry.maxBackoffMs) && clientRetry.maxBackoffMs < clientRetry.initialBackoffMs)
    problems.add('clientRetry.maxBackoffMs', `must be ≥ clientRetry.initialBackoffMs (${clientRetry.initialBackoffMs}), got ${clientRetry.maxBackoffMs}`);
  // A task is re-sent every resendMs until it ends or times out: a resend period as long as the timeout never resends.
  if (ok(repair.resendMs, repair.taskTimeoutMs) && repair.resendMs >= repair.taskTimeoutMs)
    problems.add('repair.resendMs', `must be less than repair.taskTimeoutMs (${repair.taskTimeoutMs}), got ${repair.resendMs}`);

  // Peers (uniqueness is checked in checkPeers): this node among them unless joining.
  let peers: PeerConfig[] = [];
  if (peersGiven !== INVALID) {
    const ids = new Set(peersGiven.map((peer) => peer.id));
    if (join === true && peersGiven.length === 0)
      problems.add('peers', 'must list the existing members to contact when join is true');
    if (join === false && peersGiven.length > 0 && ok(nodeId) && !ids.has(nodeId))
      problems.add('peers', `must include this node (nodeId ${JSON.stringify(nodeId)}) unless join is true; ids given: ${[...ids.keys()].join(', ')}`);
    if (join === true && ok(nodeId) && ids.has(nodeId))
      problems.add('peers', `must not include this node (nodeId ${JSON.stringify(nodeId)}) when join is true: a joining node is added by the cluster, not bootstrapped`);
    peers = peersGiven;
  }

  // TLS: cert and key together; every named file readable.
  let tls: TlsConfig | null = null;
  const t = sub('tls');
  if (t && Object.keys(t).length > 0) {
    if (t.cert === undefined) problems.add('tls.cert', 'is required when any tls setting is given (tls.cert and tls.key go together)');
    if (t.key === undefined) problems.add('tls.key', 'is required when any tls setting is given (tls.cert and tls.key go together)');
    if (t.requireClientCert === true && t.ca === undefined)
      problems.add('tls.ca', 'is required when tls.requireClientCert is true (client certificates are checked against it)');
    for (const k of ['cert', 'key', 'ca']) {
      if (typeof t[k] !== 'string') continue;
      const err = readable(t[k] as string);
      if (err) problems.add(`tls.${k}`, `file ${JSON.stringify(t[k])} is not readable (${err})`);
    }
    tls = {
      cert: t.cert as string,
      key: t.key as string,
      ca: (t.ca as string | undefined) ?? null,
      requireClientCert: (t.requireClientCert as boolean | undefined) ?? false,
    };
  }

  // Tokens (admin, peer): inline or from a file, not both.
  const token = (field: 'adminToken' | 'peerToken', maxChars: number): { value: string | null; file: string | null } => {
    const file = pick<string | null>(g, `${field}File`, null);
    const inline = pick<string | null>(g, field, null);
    if (file !== null && inline !== null) {
      problems.add(`${field}File`, `and ${field} are exclusive; give one of them`);
    } else if (typeof file === 'string') {
      try {
        const text = readFileSync(file, 'utf8').trim();
        if (text.length === 0 || /\s/.test(text) || text.length > maxChars)
          problems.add(`${field}File`, `file ${JSON.stringify(file)} must hold one token (no whitespace, 1–${maxChars} characters)`);
        else return { value: text, file };
      } catch (e) {
        problems.add(`${field}File`, `file ${JSON.stringify(file)} is not readable (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    } else if (typeof inline === 'string') return { value: inline, file: null };
    return { value: null, file: typeof file === 'string' ? file : null };
  };
  const admin = token('adminToken', MAX_TOKEN_CHARS);
  const peer = token('peerToken', MAX_PEER_TOKEN_CHARS);

  if (problems.list.length > 0) return undefined;

  if (peers.length === 0 && join === false) {
    peers = [{ id: nodeId, host: advertiseHost as string, raftPort: listen.raftPort, rpcPort: listen.rpcPort, httpPort: listen.httpPort }];
  }
  return {
    nodeId,
    clusterId: pick(g, 'clusterId', defaultConfig.clusterId) as string,
    dataDir: pick(g, 'dataDir', `./data/${nodeId}`) as string,
    listen,
    advertiseHost: advertiseHost as string,
    peers,
    join: join as boolean,
    raft,
    leaseTtlMs: pick(g, 'leaseTtlMs', defaultConfig.leaseTtlMs) as number,
    clientTtlMs: pick(g, 'clientTtlMs', defaultConfig.clientTtlMs) as number,
    putStartReclaimMs: pick(g, 'putStartReclaimMs', defaultConfig.putStartReclaimMs) as number,
    eviction,
    placement: fill('placement', defaultConfig.placement),
    tls,
    adminToken: admin.value,
    adminTokenFile: admin.file,
    peerToken: peer.value,
    peerTokenFile: peer.file,
    insecure: pick(g, 'insecure', defaultConfig.insecure) as boolean,
    limits: fill('limits', defaultConfig.limits),
    clientRetry,
    repair,
    log: fill('log', defaultConfig.log),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points

function parseYaml(text: string, source: string, problems: Problems): Raw | undefined {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors.slice(0, 10)) {
      const pos = e.linePos?.[0];
      problems.list.push(`config: ${source}${pos ? `:${pos.line}:${pos.col}` : ''} is not valid YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:$/, '')}`);
    }
    return undefined;
  }
  let value: unknown;
  try {
    // Throws on an unresolved alias or an alias bomb (more than maxAliasCount expansions).
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    problems.list.push(`config: ${source} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
  if (value === null || value === undefined) return {};
  if (!isPlainObject(value)) {
    problems.list.push(`config: ${source} must hold a mapping of settings at the top level, got ${show(value)}`);
    return undefined;
  }
  return value;
}

function fileLayer(input: string | Raw, source: string, problems: Problems): Raw | undefined {
  let raw: Raw | undefined;
  if (typeof input === 'string') raw = parseYaml(input, source, problems);
  else if (isPlainObject(input)) raw = input;
  else {
    problems.list.push(`config: ${source} must be a mapping of settings, got ${show(input)}`);
    return undefined;
  }
  return raw && applyAliases(raw, problems);
}

/**
 * Validates one configuration given as YAML text or as an object (no env, no overrides).
 * Throws ConfigError (code INVALID_CONFIG) listing every problem.
 */
export function parseConfig(input: string | Record<string, unknown>, options: { source?: string } = {}): MasterConfig {
  const source = options.source ?? (typeof input === 'string' ? 'YAML text' : 'object');
  const problems = new Problems();
  const raw = fileLayer(input, source, problems);
  const cfg = raw ? resolve(raw, problems) : undefined;
  if (!cfg) throw new ConfigError(problems.list, source);
  return cfg;
}

export interface LoadConfigOptions {
  /** Path of a YAML file. Without it, configuration comes from env and overrides only. */
  file?: string;
  /** Environment to read `MOORING_<FIELD>` from. Default process.env; pass {} to ignore the environment. */
  env?: Record<string, string | undefined>;
  /**
   * Highest-precedence values, typically from CLI flags: a nested partial config (`{raft: {tickMs: 10}}`),
   * dotted keys (`{'raft.tickMs': '10'}`) or Mooncake aliases. Strings are converted to the field's type;
   * undefined values are skipped.
   */
  overrides?: Record<string, unknown>;
}

/** Defaults < file < env < overrides, validated. Throws ConfigError (INVALID_CONFIG) listing every problem. */
export function loadConfig(options: LoadConfigOptions = {}): MasterConfig {
  const problems = new Problems();
  let fileRaw: Raw = {};
  const source = options.file ?? 'env and flags';
  if (options.file !== undefined) {
    let text: string | undefined;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (e) {
      problems.list.push(`config: file ${JSON.stringify(options.file)} is not readable (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (text !== undefined) fileRaw = fileLayer(text, options.file, problems) ?? {};
    // A token file named in the config file is found next to it (as examples/cluster-3 does).
    for (const k of ['peerTokenFile']) {
      const v = fileRaw[k];
      if (typeof v === 'string' && !nodePath.isAbsolute(v)) fileRaw[k] = nodePath.resolve(nodePath.dirname(options.file), v);
    }
  }
  const envRaw = envLayer(options.env ?? process.env, problems);
  const overRaw = overridesLayer(options.overrides ?? {}, problems);
  // File problems do not stop here: everything else is still checked and reported together.
  const merged = mergeLayers(mergeLayers(fileRaw, envRaw), overRaw);
  const cfg = resolve(merged, problems);
  if (!cfg || problems.list.length > 0) throw new ConfigError(problems.list, source);
  return cfg;
}

/** The Raft tunables this config sets (RaftNode fills the rest from raftDefaults). */
export function toRaftTunables(cfg: MasterConfig): Partial<RaftTunables> {
  const r = cfg.raft;
  return {
    tickMs: r.tickMs,
    electionTimeoutTicks: r.electionTimeoutTicks,
    heartbeatIntervalTicks: r.heartbeatIntervalTicks,
    preVote: r.preVote,
    checkQuorum: r.checkQuorum,
    fastFailover: r.fastFailover,
    readMode: r.readMode,
    followerLeaseTicks: r.followerLeaseTicks,
    maxEntriesPerAppend: r.maxEntriesPerAppend,
    maxBytesPerAppend: r.maxBytesPerAppend,
    maxInflightAppends: r.maxInflightAppends,
    maxInflightBytes: r.maxInflightBytes,
    maxInflightSaves: r.maxInflightSaves,
    proposalTimeoutMs: r.proposalTimeoutMs,
    maxProposalWaitMs: r.maxProposalWaitMs,
    snapshotEveryEntries: r.snapshotEveryEntries,
  };
}

/** The Raft core options this config implies (everything but id, storage, rng, applied), via the one conversion. */
export function toRaftCoreOptions(cfg: MasterConfig): CoreOptions {
  return toCoreOptions({ ...raftDefaults, ...toRaftTunables(cfg) });
}

/**
 * Why this configuration may not start a master, or null. Peers must authenticate (shared peer token or mTLS);
 * `insecure: true` is the explicit way out. One line, naming the field to set.
 */
export function peerAuthProblem(cfg: MasterConfig): string | null {
  if (cfg.peerToken !== null || cfg.tls?.requireClientCert === true || cfg.insecure) return null;
  // A lone node that joins nobody has no member a stranger could pretend to be (unknown ids are refused anyway).
  if (!cfg.join && cfg.peers.every((p) => p.id === cfg.nodeId)) return null;
  return 'config: peerTokenFile: peers must authenticate: set peerTokenFile (e.g. `openssl rand -hex 32 > peer.token`), or tls.requireClientCert: true, or insecure: true to accept any peer (not for production)';
}

/** A copy safe to log or serve on /status: secrets replaced. */
export function redactConfig(cfg: MasterConfig): MasterConfig {
  return { ...cfg, adminToken: cfg.adminToken === null ? null : '<redacted>', peerToken: cfg.peerToken === null ? null : '<redacted>' };
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
