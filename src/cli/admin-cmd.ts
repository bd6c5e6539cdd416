/**
 * `mooring admin <command>`: operate a running cluster through MasterClient. Human tables by default, `--json`
 * for scripts. Any failure prints `error CODE: message` on stderr and exits 1.
 * Where to connect: flags, then MOORING_* env, then `--config` (a master's YAML: its cluster id, peers' RPC
 * endpoints, TLS files and admin token), then the defaults.
 */
import { randomUUID } from 'node:crypto';
import { Command, Option } from 'commander';
import { ErrorCode, MooringError } from '../errors.js';
import { MasterClient } from '../master/client.js';
import { ConfigError, defaultConfig, loadConfig, type MasterConfig } from '../master/config.js';
import type { TlsConfig } from '../transport/net-util.js';
import { adminClientPrefix } from '../statemachine/clients.js';
import { nodeStatuses, protocols, tiers, type NodeStatus, type Protocol, type SegmentSpec, type Tier } from '../statemachine/commands.js';
import { runBackupToFile } from './restore-cmd.js';
import { formatBytes, parseBytes, parseInteger, table, writeOut, type Row } from './format.js';

/** Admin calls are few and interactive: retry through a failover for a while, then give up. */
const adminRetry = { maxAttempts: 10, initialBackoffMs: 100, maxBackoffMs: 1_000 };
const defaultAdminTimeoutMs = 5_000;

const defaultAdminEndpoint = `127.0.0.1:${defaultConfig.listen.rpcPort}`;

interface CommonFlags {
  endpoints?: string;
  token?: string;
  clusterId?: string;
  config?: string;
  ca?: string;
  cert?: string;
  key?: string;
  timeout: string;
  json?: boolean;
}

function common(cmd: Command): Command {
  return cmd
    .addOption(new Option('-e, --endpoints <list>', `master RPC endpoints, host:port[,host:port...] (default: the peers in --config, else ${defaultAdminEndpoint})`).env('MOORING_ENDPOINTS'))
    .addOption(new Option('--token <token>', 'admin token (adminToken of the masters; default: from --config)').env('MOORING_ADMIN_TOKEN'))
    .addOption(new Option('--cluster-id <id>', `cluster id (default: from --config, else ${defaultConfig.clusterId})`).env('MOORING_CLUSTER_ID'))
    .addOption(new Option('-c, --config <file>', 'a master\'s YAML config: cluster id, endpoints, TLS and admin token come from it').env('MOORING_CONFIG'))
    .option('--ca <file>', 'TLS: CA certificate (PEM) that signed the masters\' certificates')
    .option('--cert <file>', 'TLS: this client\'s certificate (PEM)')
    .option('--key <file>', 'TLS: this client\'s key (PEM)')
    .option('--timeout <ms>', 'per-request timeout in ms', String(defaultAdminTimeoutMs))
    .option('--json', 'print JSON instead of a table');
}

/** What a master's config says about reaching its cluster (read only with --config). */
function fromConfig(file: string): MasterConfig {
  try {
    return loadConfig({ file });
  } catch (err) {
    if (err instanceof ConfigError) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `--config ${file}: ${err.message}`);
    throw err;
  }
}

/** Every endpoint's `host:rpcPort` in the config (a wildcard listen address is reached on loopback). */
function configEndpoints(cfg: MasterConfig): string[] {
  const reach = (h: string): string => (h === '0.0.0.0' || h === '::' ? '127.0.0.1' : h);
  return cfg.peers.map((p) => `${reach(p.host)}:${p.rpcPort}`);
}

/** Flags (and their env vars) first, then --config, then defaults. */
export function resolveAdminTarget(f: CommonFlags): { endpoints: string[]; clusterId: string; token?: string; tls?: TlsConfig } {
  // An empty flag or env value counts as not given (like MOORING_* in the master's config).
  for (const k of ['endpoints', 'token', 'clusterId', 'config'] as const) if (f[k] === '') delete f[k];
  const cfg = f.config !== undefined ? fromConfig(f.config) : undefined;
  const endpoints = f.endpoints !== undefined
    ? f.endpoints.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
    : cfg !== undefined ? configEndpoints(cfg) : [defaultAdminEndpoint];
  let tls: TlsConfig | undefined;
  if (f.ca !== undefined || f.cert !== undefined || f.key !== undefined) {
    // The transport's TLS client always presents a certificate, so TLS takes all three.
    if (f.ca === undefined || f.cert === undefined || f.key === undefined) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'TLS needs --ca, --cert and --key together');
    }
    tls = { ca: f.ca, cert: f.cert, key: f.key };
  } else if (cfg?.tls != null && cfg.tls.ca !== null) {
    tls = { ca: cfg.tls.ca, cert: cfg.tls.cert, key: cfg.tls.key };
  }
  const token = f.token ?? cfg?.adminToken ?? undefined;
  return {
    endpoints,
    clusterId: f.clusterId ?? cfg?.clusterId ?? defaultConfig.clusterId,
    ...(token !== undefined ? { token } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/** A CLUSTER_MISMATCH says which id the masters expect; add how to give it to this command. */
function explainMismatch(err: unknown, clusterId: string): unknown {
  if (!(err instanceof MooringError) || err.code !== ErrorCode.CLUSTER_MISMATCH) return err;
  return new MooringError(ErrorCode.CLUSTER_MISMATCH,
    `${err.message} (admin used cluster id '${clusterId}'; pass --cluster-id ID, set MOORING_CLUSTER_ID, or --config <the master's YAML>)`,
    { cause: err });
}

function makeClient(f: CommonFlags, clientId?: string): MasterClient {
  const { endpoints, clusterId, token, tls } = resolveAdminTarget(f);
  f.clusterId = clusterId; // what was used, for explainMismatch
  f.endpoints = endpoints.join(',');
  if (f.token === undefined && token !== undefined) f.token = token;
  return new MasterClient({
    endpoints,
    clusterId,
    clientId: clientId ?? `${adminClientPrefix}${randomUUID()}`,
    ...(tls !== undefined ? { tls } : {}),
    ...(f.token !== undefined ? { adminToken: f.token } : {}),
    requestTimeoutMs: parseInteger(f.timeout, '--timeout', 1),
    retry: adminRetry,
  });
}

/** Runs `fn` with a client, prints its result (table or JSON), closes the client. */
function action<F extends CommonFlags = CommonFlags>(
  fn: (c: MasterClient, f: F) => Promise<{ json: unknown; text: string }>,
  clientIdOf?: (f: F) => string | undefined,
): (flags: F) => Promise<void> {
  return async (flags: F) => {
    const client = makeClient(flags, clientIdOf?.(flags));
    try {
      let out: { json: unknown; text: string };
      try {
        out = await fn(client, flags);
      } catch (err) {
        throw explainMismatch(err, flags.clusterId ?? defaultConfig.clusterId);
      }
      await writeOut(flags.json === true ? `${JSON.stringify(out.json, null, 2)}\n` : `${out.text}\n`);
    } finally {
      await client.close();
    }
  };
}

export function adminCommand(): Command {
  const admin = new Command('admin').description('operate a running cluster (status, members, segments, membership, snapshots)');

  admin.addCommand(common(new Command('status').description('status of every endpoint (role, term, indexes, readiness)'))
    .action(action<CommonFlags>(async (c, f) => {
      const endpoints = (f.endpoints ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
      const rows = await Promise.all(endpoints.map(async (endpoint): Promise<Row> => {
        try {
          const s = await c.status(endpoint);
          const stats = (s.stats ?? {}) as Record<string, number>;
          const ready = s.ready as { ready: boolean; reason?: string } | undefined;
          return { endpoint, id: s.id, role: s.role, term: s.term, leader: s.leader, commit: s.commit, applied: s.applied,
            ready: ready?.ready ?? false, objects: stats.objectCount, segments: stats.segmentCount, clients: stats.clientCount, raw: s };
        } catch (err) {
          const explained = explainMismatch(err, f.clusterId ?? defaultConfig.clusterId);
          const e = explained instanceof MooringError ? explained : new MooringError(ErrorCode.RPC_FAILED, String(err));
          return { endpoint, error: `${e.code}: ${e.message}` };
        }
      }));
      if (rows.every((r) => r.error !== undefined)) {
        throw new MooringError(ErrorCode.UNAVAILABLE, `no master answered: ${rows.map((r) => `${String(r.endpoint)} (${String(r.error)})`).join('; ')}`);
      }
      return {
        json: rows.map((r) => (r.error !== undefined ? { endpoint: r.endpoint, error: r.error } : { endpoint: r.endpoint, ...(r.raw as object) })),
        text: table(rows, ['endpoint', 'id', 'role', 'term', 'leader', 'commit', 'applied', 'ready', 'objects', 'segments', 'clients', 'error']),
      };
    })));

  admin.addCommand(common(new Command('members').description('voters and learners of the Raft group'))
    .action(action<CommonFlags>(async (c) => {
      const members = await c.members();
      return { json: members, text: table(members as unknown as Row[], ['id', 'role', ['isLeader', 'leader'], 'raft', 'rpc', 'http']) };
    })));

  admin.addCommand(common(new Command('list-segments').description('mounted segments with their usage'))
    .action(action<CommonFlags>(async (c) => {
      const segs = await c.listSegments();
      const rows: Row[] = segs.map((s) => ({ ...s, sizeH: formatBytes(s.size), used: `${(s.usageRatio * 100).toFixed(1)}%` }));
      return { json: segs, text: rows.length === 0 ? '(no segments)' : table(rows, ['id', ['clientId', 'client'], 'endpoint', 'protocol', 'zone', 'tier', 'status', ['sizeH', 'size'], 'used']) };
    })));

  interface MountFlags extends CommonFlags { id: string; size: string; endpoint: string; protocol: string; zone?: string; name?: string; base: string; tier: string; clientId?: string }
  admin.addCommand(common(new Command('mount-segment')
    .description('mount a segment for a storage client (the segment belongs to --client-id; a client that stops pinging is expired after clientTtlMs with its segments)'))
    .requiredOption('--id <id>', 'segment id')
    .requiredOption('--size <bytes>', 'size, e.g. 1GiB')
    .requiredOption('--endpoint <host:port>', 'where the storage client serves this segment')
    .option('--protocol <p>', protocols.join('|'), 'tcp')
    .option('--zone <zone>', 'failure zone (zone-spread placement)')
    .option('--name <name>', 'display name (default: the id)')
    .option('--base <addr>', 'base address the client registered', '0')
    .option('--tier <tier>', tiers.join('|'), 'DRAM')
    .option('--client-id <id>', 'owning client id (default: a new admin-<uuid>)')
    .action(action<MountFlags>(async (c, f) => {
      if (!(protocols as readonly string[]).includes(f.protocol)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `--protocol must be one of ${protocols.join(', ')}`);
      if (!(tiers as readonly string[]).includes(f.tier)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `--tier must be one of ${tiers.join(', ')}`);
      const spec: SegmentSpec = {
        id: f.id, name: f.name ?? f.id, base: parseInteger(f.base, '--base'), size: parseBytes(f.size), endpoint: f.endpoint,
        protocol: f.protocol as Protocol, tier: f.tier as Tier, ...(f.zone !== undefined ? { zone: f.zone } : {}),
      };
      const r = await c.mountSegment(spec);
      return { json: { clientId: c.clientId, result: r }, text: `mounted ${spec.id} (${formatBytes(spec.size)}) for client ${c.clientId}` };
    }, (f) => f.clientId ?? `${adminClientPrefix}${randomUUID()}`)));

  interface UnmountFlags extends CommonFlags { id: string; graceful?: boolean }
  admin.addCommand(common(new Command('unmount-segment').description('unmount a segment (forced: replicas there are dropped now; --graceful: drain first)'))
    .requiredOption('--id <id>', 'segment id')
    .option('--graceful', 'DRAINING until its objects are gone, then removed')
    .action(action<UnmountFlags>(async (c, f) => {
      const r = await c.unmountSegment(f.id, f.graceful === true);
      return { json: r, text: `${f.id}: ${r.status}` };
    })));

  interface NodeFlags extends CommonFlags { node: string; status: string }
  admin.addCommand(common(new Command('set-node-status').description('ACTIVE | MAINTENANCE (no new allocations on its segments) | DRAINING (move data off)'))
    .requiredOption('--node <clientId>', 'storage node (client id) whose segments are affected')
    .requiredOption('--status <status>', nodeStatuses.join('|'))
    .action(action<NodeFlags>(async (c, f) => {
      if (!(nodeStatuses as readonly string[]).includes(f.status)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `--status must be one of ${nodeStatuses.join(', ')}`);
      const r = await c.setNodeStatus(f.node, f.status as NodeStatus);
      return { json: r ?? { node: f.node, status: f.status }, text: `node ${f.node}: ${f.status}` };
    })));

  interface ToFlags extends CommonFlags { to: string }
  admin.addCommand(common(new Command('transfer-leader').description('hand leadership to another voter'))
    .requiredOption('--to <id>', 'target node id')
    .action(action<ToFlags>(async (c, f) => {
      const r = await c.transferLeader(f.to);
      return { json: r, text: `leadership transferred to ${f.to}` };
    })));

  interface AddFlags extends CommonFlags { id: string; host: string; raftPort: string; rpcPort: string; httpPort?: string }
  admin.addCommand(common(new Command('add-member').description('add a node: joins as a learner, catches up, then becomes a voter'))
    .requiredOption('--id <id>', 'node id')
    .requiredOption('--host <host>', 'its advertised host')
    .requiredOption('--raft-port <port>', 'its peer port')
    .requiredOption('--rpc-port <port>', 'its client RPC port')
    .option('--http-port <port>', 'its ops HTTP port')
    .action(action<AddFlags>(async (c, f) => {
      const r = await c.addMember({
        id: f.id, host: f.host, raftPort: parseInteger(f.raftPort, '--raft-port', 1, 65535), rpcPort: parseInteger(f.rpcPort, '--rpc-port', 1, 65535),
        ...(f.httpPort !== undefined ? { httpPort: parseInteger(f.httpPort, '--http-port', 1, 65535) } : {}),
      });
      return { json: r, text: `added ${f.id}; ${describeMembership(r)}` };
    })));

  interface IdFlags extends CommonFlags { id: string }
  admin.addCommand(common(new Command('remove-member').description('remove a node from the Raft group'))
    .requiredOption('--id <id>', 'node id')
    .action(action<IdFlags>(async (c, f) => {
      const r = await c.removeMember(f.id);
      return { json: r, text: `removed ${f.id}; ${describeMembership(r)}` };
    })));

  admin.addCommand(common(new Command('snapshot').description('take a snapshot now (compacts the log) on the node that answers'))
    .action(action<CommonFlags>(async (c) => {
      const r = await c.snapshot();
      return { json: r, text: `snapshot at index ${r.index}` };
    })));

  admin.addCommand(common(new Command('backup').description('stream a consistent backup of the master state from the leader into FILE (see `mooring restore`)'))
    .argument('<file>', 'backup file to write')
    .action((file: string, flags: CommonFlags) => action<CommonFlags>(async (c) => {
      const r = await runBackupToFile(c, file);
      return { json: { file, ...r }, text: `backup of ${r.header.objectCount} objects at index ${r.header.index}: ${file} (${formatBytes(r.bytes)}, sha256 ${r.sha256})` };
    })(flags)));

  return admin;
}

/** `voters m1, m2, m3; learners m4` from a membership reply (or its JSON when it has another shape). */
function describeMembership(r: unknown): string {
  const cs = r as { voters?: unknown; learners?: unknown } | null;
  if (cs === null || typeof cs !== 'object' || !Array.isArray(cs.voters)) return JSON.stringify(r);
  const learners = Array.isArray(cs.learners) && cs.learners.length > 0 ? `; learners ${cs.learners.join(', ')}` : '';
  return `voters ${cs.voters.join(', ')}${learners}`;
}
