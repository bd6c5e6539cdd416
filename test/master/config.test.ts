import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import {
  ConfigError,
  defaultConfig,
  listConfigFields,
  loadConfig,
  parseConfig,
  redactConfig,
  toRaftCoreOptions,
} from '../../src/master/config.js';

const dir = mkdtempSync(join(tmpdir(), 'mooring-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** The problems a config produces (it must fail with INVALID_CONFIG). */
function problemsOf(input: string | Record<string, unknown>): string[] {
  try {
    parseConfig(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect(e).toBeInstanceOf(MooringError);
    expect((e as MooringError).code).toBe(ErrorCode.INVALID_CONFIG);
    // The message lists every problem too.
    for (const p of (e as ConfigError).problems) expect((e as Error).message).toContain(p);
    return (e as ConfigError).problems;
  }
  throw new Error('expected the config to be rejected');
}

function expectProblem(input: string | Record<string, unknown>, path: string, fragment?: string): void {
  const problems = problemsOf(input);
  const hit = problems.find((p) => p.startsWith(`config: ${path} `) && (fragment === undefined || p.includes(fragment)));
  expect(hit, `no problem for ${path}${fragment ? ` containing "${fragment}"` : ''} in:\n${problems.join('\n')}`).toBeDefined();
}

const three = {
  nodeId: 'm1',
  peers: [
    { id: 'm1', host: '127.0.0.1', raftPort: 7401, rpcPort: 50061 },
    { id: 'm2', host: '127.0.0.1', raftPort: 7402, rpcPort: 50062 },
    { id: 'm3', host: '127.0.0.1', raftPort: 7403, rpcPort: 50063, httpPort: 9013 },
  ],
};

describe('parseConfig: defaults', () => {
  it('a config with only nodeId is a single-node master on localhost with every default', () => {
    const c = parseConfig('nodeId: m1\n');
    expect(c.nodeId).toBe('m1');
    expect(c.clusterId).toBe('mooring');
    expect(c.dataDir).toBe('./data/m1');
    expect(c.listen).toEqual({ host: '127.0.0.1', raftPort: 7400, rpcPort: 50051, httpPort: 9003 });
    expect(c.advertiseHost).toBe('127.0.0.1');
    expect(c.peers).toEqual([{ id: 'm1', host: '127.0.0.1', raftPort: 7400, rpcPort: 50051, httpPort: 9003 }]);
    expect(c.join).toBe(false);
    expect(c.raft).toEqual(defaultConfig.raft);
    expect(c.raft.tickMs).toBe(25);
    expect(c.raft.readMode).toBe('lease');
    expect(c.raft.maxFrameBytes).toBe(16 * 1024 * 1024);
    expect(c.leaseTtlMs).toBe(10_000);
    expect(c.clientTtlMs).toBe(10_000);
    expect(c.putStartReclaimMs).toBe(600_000);
    expect(c.eviction).toEqual({ highWatermark: 0.85, target: 0.75, checkIntervalMs: 10 });
    expect(c.placement.strategy).toBe('random');
    expect(c.tls).toBeNull();
    expect(c.adminToken).toBeNull();
    expect(c.clientRetry).toEqual({ initialBackoffMs: 100, maxBackoffMs: 5000, maxAttempts: 3, requestTimeoutMs: 2000 });
    expect(c.log).toEqual({ level: 'info', pretty: false });
  });

  it('derives advertiseHost from listen.host and keeps given values', () => {
    const c = parseConfig({ nodeId: 'a', listen: { host: '0.0.0.0', httpPort: 0 }, dataDir: '/var/lib/x' });
    expect(c.advertiseHost).toBe('0.0.0.0');
    expect(c.listen.httpPort).toBe(0);
    expect(c.listen.raftPort).toBe(7400);
    expect(c.dataDir).toBe('/var/lib/x');
  });

  it('keeps a three-node peer list and treats YAML null as "use the default"', () => {
    const c = parseConfig({ ...three, raft: null, log: { level: null, pretty: true } });
    expect(c.peers.map((p) => p.id)).toEqual(['m1', 'm2', 'm3']);
    expect(c.peers[0]!.httpPort).toBeNull();
    expect(c.peers[2]!.httpPort).toBe(9013);
    expect(c.log).toEqual({ level: 'info', pretty: true });
    expect(c.raft.tickMs).toBe(25);
  });

  it('a joining node lists the members to contact and is not among them', () => {
    const c = parseConfig({ nodeId: 'm4', join: true, peers: three.peers });
    expect(c.join).toBe(true);
    expect(c.peers).toHaveLength(3);
  });

  it('defaultConfig is frozen so nobody mutates the shared defaults', () => {
    expect(Object.isFrozen(defaultConfig)).toBe(true);
    expect(Object.isFrozen(defaultConfig.raft)).toBe(true);
  });
});

describe('parseConfig: Mooncake aliases', () => {
  it('maps snake_case names (with units) onto the canonical fields', () => {
    const c = parseConfig(
      'nodeId: m1\ndefault_kv_lease_ttl: 5000\nclient_ttl: 20\neviction_high_watermark_ratio: 0.9\n' +
        'rpc_port: 50071\nmetrics_port: 9103\nrpc_address: 0.0.0.0\ncluster_id: prod\nallocation_strategy: free_ratio_first\n',
    );
    expect(c.leaseTtlMs).toBe(5000);
    expect(c.clientTtlMs).toBe(20_000); // Mooncake's client_ttl is in seconds
    expect(c.eviction.highWatermark).toBe(0.9);
    expect(c.listen.rpcPort).toBe(50071);
    expect(c.listen.httpPort).toBe(9103);
    expect(c.listen.host).toBe('0.0.0.0');
    expect(c.clusterId).toBe('prod');
    expect(c.placement.strategy).toBe('free-ratio-first');
  });

  it('rejects an alias given together with its canonical field', () => {
    expectProblem({ nodeId: 'm1', client_ttl: 5, clientTtlMs: 5000 }, 'client_ttl', 'alias of clientTtlMs');
    expectProblem({ nodeId: 'm1', eviction_high_watermark_ratio: 0.9, eviction: { highWatermark: 0.9 } }, 'eviction_high_watermark_ratio');
  });

  it('names the alias when its value is wrong', () => {
    expectProblem({ nodeId: 'm1', client_ttl: 'soon' }, 'client_ttl', 'must be a number');
    expectProblem({ nodeId: 'm1', default_kv_lease_ttl: -1 }, 'leaseTtlMs', 'from default_kv_lease_ttl');
  });
});

describe('parseConfig: every check names its field', () => {
  const cases: Array<[string, Record<string, unknown>, string, string?]> = [
    ['missing nodeId', {}, 'nodeId', 'is required'],
    ['bad nodeId', { nodeId: 'has space' }, 'nodeId', 'letters, digits'],
    ['nodeId not a string', { nodeId: 7 }, 'nodeId', 'non-empty string'],
    ['bad clusterId', { nodeId: 'a', clusterId: '' }, 'clusterId'],
    ['dataDir not a string', { nodeId: 'a', dataDir: 5 }, 'dataDir'],
    ['listen not a mapping', { nodeId: 'a', listen: 5 }, 'listen', 'mapping'],
    ['listen.host with a slash', { nodeId: 'a', listen: { host: 'http://x' } }, 'listen.host'],
    ['raftPort too large', { nodeId: 'a', listen: { raftPort: 65536 } }, 'listen.raftPort', '≤ 65535'],
    ['rpcPort negative', { nodeId: 'a', listen: { rpcPort: -1 } }, 'listen.rpcPort', '≥ 0'],
    ['httpPort fractional', { nodeId: 'a', listen: { httpPort: 80.5 } }, 'listen.httpPort', 'integer'],
    ['ports collide', { nodeId: 'a', listen: { raftPort: 7000, rpcPort: 7000 } }, 'listen.rpcPort', 'must differ from listen.raftPort'],
    ['http port collides', { nodeId: 'a', listen: { httpPort: 7400 } }, 'listen.httpPort', 'must differ'],
    ['advertiseHost empty', { nodeId: 'a', advertiseHost: '' }, 'advertiseHost'],
    ['join not bool', { nodeId: 'a', join: 'yes' }, 'join', 'true or false'],
    ['tickMs zero', { nodeId: 'a', raft: { tickMs: 0 } }, 'raft.tickMs'],
    ['electionTimeoutTicks too small', { nodeId: 'a', raft: { electionTimeoutTicks: 1 } }, 'raft.electionTimeoutTicks', 'must be an integer ≥ 3'],
    ['heartbeat ≥ election', { nodeId: 'a', raft: { heartbeatIntervalTicks: 6 } }, 'raft.heartbeatIntervalTicks', 'less than raft.electionTimeoutTicks'],
    ['preVote not bool', { nodeId: 'a', raft: { preVote: 1 } }, 'raft.preVote'],
    ['checkQuorum not bool', { nodeId: 'a', raft: { checkQuorum: 'no' } }, 'raft.checkQuorum'],
    ['readMode unknown', { nodeId: 'a', raft: { readMode: 'fast' } }, 'raft.readMode', "'lease', 'readIndex'"],
    ['lease without checkQuorum', { nodeId: 'a', raft: { checkQuorum: false } }, 'raft.readMode', 'requires raft.checkQuorum'],
    ['maxEntriesPerAppend zero', { nodeId: 'a', raft: { maxEntriesPerAppend: 0 } }, 'raft.maxEntriesPerAppend'],
    ['maxBytesPerAppend ≥ frame', { nodeId: 'a', raft: { maxBytesPerAppend: 16 * 1024 * 1024 } }, 'raft.maxBytesPerAppend', 'raft.maxFrameBytes'],
    ['maxInflightAppends zero', { nodeId: 'a', raft: { maxInflightAppends: 0 } }, 'raft.maxInflightAppends'],
    ['maxInflightBytes zero', { nodeId: 'a', raft: { maxInflightBytes: 0 } }, 'raft.maxInflightBytes'],
    ['snapshotEveryEntries zero', { nodeId: 'a', raft: { snapshotEveryEntries: 0 } }, 'raft.snapshotEveryEntries'],
    ['maxFrameBytes tiny', { nodeId: 'a', raft: { maxFrameBytes: 100 } }, 'raft.maxFrameBytes'],
    ['proposalTimeoutMs zero', { nodeId: 'a', raft: { proposalTimeoutMs: 0 } }, 'raft.proposalTimeoutMs'],
    ['leaseTtlMs string', { nodeId: 'a', leaseTtlMs: '10s' }, 'leaseTtlMs', 'got "10s"'],
    ['clientTtlMs zero', { nodeId: 'a', clientTtlMs: 0 }, 'clientTtlMs'],
    ['clientTtlMs below one housekeeping interval', { nodeId: 'a', clientTtlMs: 999 }, 'clientTtlMs'],
    ['putStartReclaimMs negative', { nodeId: 'a', putStartReclaimMs: -5 }, 'putStartReclaimMs'],
    ['highWatermark > 1', { nodeId: 'a', eviction: { highWatermark: 1.5 } }, 'eviction.highWatermark', '(0, 1]'],
    ['highWatermark 0', { nodeId: 'a', eviction: { highWatermark: 0 } }, 'eviction.highWatermark'],
    ['target 1', { nodeId: 'a', eviction: { target: 1 } }, 'eviction.target'],
    ['target ≥ high', { nodeId: 'a', eviction: { highWatermark: 0.8, target: 0.8 } }, 'eviction.target', 'less than eviction.highWatermark'],
    ['checkIntervalMs zero', { nodeId: 'a', eviction: { checkIntervalMs: 0 } }, 'eviction.checkIntervalMs'],
    ['placement unknown', { nodeId: 'a', placement: { strategy: 'best' } }, 'placement.strategy', "'zone-spread'"],
    ['tls cert without key', { nodeId: 'a', tls: { cert: '/etc/hostname' } }, 'tls.key', 'go together'],
    ['tls key without cert', { nodeId: 'a', tls: { key: '/etc/hostname' } }, 'tls.cert', 'go together'],
    ['tls mTLS without ca', { nodeId: 'a', tls: { requireClientCert: true } }, 'tls.ca', 'requireClientCert'],
    ['tls unreadable', { nodeId: 'a', tls: { cert: '/nonexistent/c.pem', key: '/nonexistent/k.pem' } }, 'tls.cert', 'not readable'],
    ['tls key unreadable', { nodeId: 'a', tls: { cert: '/etc/hostname', key: '/nonexistent/k.pem' } }, 'tls.key', 'ENOENT'],
    ['token and token file', { nodeId: 'a', adminToken: 'x', adminTokenFile: '/etc/hostname' }, 'adminTokenFile', 'exclusive'],
    ['token with whitespace', { nodeId: 'a', adminToken: 'a b' }, 'adminToken'],
    ['token file missing', { nodeId: 'a', adminTokenFile: '/nonexistent/token' }, 'adminTokenFile', 'not readable'],
    ['maxBackoff < initial', { nodeId: 'a', clientRetry: { initialBackoffMs: 500, maxBackoffMs: 100 } }, 'clientRetry.maxBackoffMs'],
    ['maxAttempts zero', { nodeId: 'a', clientRetry: { maxAttempts: 0 } }, 'clientRetry.maxAttempts'],
    ['requestTimeoutMs zero', { nodeId: 'a', clientRetry: { requestTimeoutMs: 0 } }, 'clientRetry.requestTimeoutMs'],
    ['log.level unknown', { nodeId: 'a', log: { level: 'loud' } }, 'log.level', "'info'"],
    ['log.pretty not bool', { nodeId: 'a', log: { pretty: 'yes' } }, 'log.pretty'],
    ['unknown top-level key', { nodeId: 'a', nodeID: 'b' }, 'nodeID', 'not a known setting'],
    ['unknown nested key with hint', { nodeId: 'a', raft: { tickMS: 5 } }, 'raft.tickMS', 'did you mean raft.tickMs?'],
    ['peers not a list', { nodeId: 'a', peers: 'm1,m2' }, 'peers', 'list'],
    ['peer missing host', { nodeId: 'a', peers: [{ id: 'a', raftPort: 1, rpcPort: 2 }] }, 'peers[0].host', 'required'],
    ['peer port 0', { nodeId: 'a', peers: [{ id: 'a', host: 'h', raftPort: 0, rpcPort: 2 }] }, 'peers[0].raftPort'],
    ['peer unknown key', { nodeId: 'a', peers: [{ id: 'a', host: 'h', raftPort: 1, rpcPort: 2, zone: 'z' }] }, 'peers[0].zone'],
    ['peer not a mapping', { nodeId: 'a', peers: ['a'] }, 'peers[0]', 'mapping'],
  ];
  for (const [name, input, path, fragment] of cases) {
    it(`${name} → ${path}`, () => expectProblem(input, path, fragment));
  }

  it('duplicate peer ids and addresses', () => {
    const peers = [
      { id: 'm1', host: 'h', raftPort: 1, rpcPort: 2 },
      { id: 'm1', host: 'h', raftPort: 3, rpcPort: 4 },
      { id: 'm3', host: 'h', raftPort: 5, rpcPort: 1 },
    ];
    const problems = problemsOf({ nodeId: 'm1', peers });
    expect(problems.some((p) => p.startsWith('config: peers[1].id ') && p.includes('duplicates peers[0].id'))).toBe(true);
    expect(problems.some((p) => p.startsWith('config: peers[2].rpcPort ') && p.includes('h:1'))).toBe(true);
  });

  it('duplicate peers are reported even when another peer entry has its own problem', () => {
    const peers = [
      { id: 'm1', host: 'h', raftPort: 1, rpcPort: 2 },
      { id: 'm1', host: 'h', raftPort: 1, rpcPort: 70_000 },
    ];
    const problems = problemsOf({ nodeId: 'm1', peers });
    expect(problems.some((p) => p.startsWith('config: peers[1].rpcPort ') && p.includes('≤ 65535'))).toBe(true);
    expect(problems.some((p) => p.startsWith('config: peers[1].id ') && p.includes('duplicates'))).toBe(true);
    expect(problems.some((p) => p.startsWith('config: peers[1].raftPort ') && p.includes('h:1'))).toBe(true);
  });

  it('nodeId must be among the peers unless joining; a joining node needs peers', () => {
    expectProblem({ nodeId: 'm9', peers: three.peers }, 'peers', 'must include this node');
    expectProblem({ nodeId: 'm9', join: true }, 'peers', 'existing members');
    expectProblem({ nodeId: 'm1', join: true, peers: three.peers }, 'peers', 'must not include this node');
  });

  it('collects every problem at once instead of stopping at the first', () => {
    const problems = problemsOf({ raft: { tickMs: -1, electionTimeoutTicks: 1 }, log: { level: 'x' }, bogus: 1 });
    for (const path of ['nodeId', 'raft.tickMs', 'raft.electionTimeoutTicks', 'log.level', 'bogus'])
      expect(problems.some((p) => p.startsWith(`config: ${path} `)), path).toBe(true);
  });

  it('reports YAML syntax errors and duplicate keys with a position, and rejects a non-mapping document', () => {
    expect(problemsOf('nodeId: a\nraft: [1\n')[0]).toMatch(/YAML text:\d+:\d+ is not valid YAML/);
    expect(problemsOf('nodeId: a\nnodeId: b\n')[0]).toMatch(/unique/);
    expect(problemsOf('- a\n- b\n')[0]).toMatch(/top level/);
  });

  it('an empty document is missing only nodeId', () => {
    expect(problemsOf('')).toEqual(['config: nodeId is required (set it in the file, with MOORING_NODE_ID or a flag override)']);
  });
});

describe('parseConfig: readable files', () => {
  it('accepts TLS files that exist and reads the admin token from its file', () => {
    const cert = file('c.pem', 'CERT'), key = file('k.pem', 'KEY'), ca = file('ca.pem', 'CA');
    const token = file('token', 's3cret-token\n');
    const c = parseConfig({ nodeId: 'a', tls: { cert, key, ca, requireClientCert: true }, adminTokenFile: token });
    expect(c.tls).toEqual({ cert, key, ca, requireClientCert: true });
    expect(c.adminToken).toBe('s3cret-token');
    expect(c.adminTokenFile).toBe(token);
    expect(redactConfig(c).adminToken).toBe('<redacted>');
    expect(JSON.stringify(redactConfig(c))).not.toContain('s3cret');
  });

  it('rejects an empty token file', () => {
    expectProblem({ nodeId: 'a', adminTokenFile: file('empty-token', '\n') }, 'adminTokenFile', 'one token');
  });

  it('rejects a TLS path that cannot be a readable file, with the OS reason', () => {
    // A path through a regular file fails for every user (root reads any file, so EACCES is not testable as root).
    const notDir = file('plain', 'x');
    expectProblem({ nodeId: 'a', tls: { cert: file('c2.pem', 'C'), key: join(notDir, 'k.pem') } }, 'tls.key', 'ENOTDIR');
    if (process.getuid?.() !== 0) {
      const key = file('k-noperm.pem', 'KEY');
      chmodSync(key, 0o000);
      expectProblem({ nodeId: 'a', tls: { cert: file('c3.pem', 'C'), key } }, 'tls.key', 'EACCES');
    }
  });
});

describe('loadConfig: file < env < overrides', () => {
  const base = file('base.yaml', 'nodeId: fromfile\nlisten:\n  httpPort: 9100\nraft:\n  tickMs: 30\nlog:\n  level: warn\n');

  it('reads the file when nothing overrides it', () => {
    const c = loadConfig({ file: base, env: {} });
    expect(c.nodeId).toBe('fromfile');
    expect(c.listen.httpPort).toBe(9100);
    expect(c.raft.tickMs).toBe(30);
    expect(c.log.level).toBe('warn');
  });

  it('env beats the file, flags beat env; strings are converted to the field type', () => {
    const env = { MOORING_NODE_ID: 'fromenv', MOORING_RAFT_TICK_MS: '40', MOORING_LOG_LEVEL: 'debug', MOORING_RAFT_PRE_VOTE: 'false', MOORING_LISTEN_HTTP_PORT: '9200' };
    const c1 = loadConfig({ file: base, env });
    expect(c1.nodeId).toBe('fromenv');
    expect(c1.raft.tickMs).toBe(40);
    expect(c1.raft.preVote).toBe(false);
    expect(c1.log.level).toBe('debug');
    expect(c1.listen.httpPort).toBe(9200);
    expect(c1.dataDir).toBe('./data/fromenv');
    const c2 = loadConfig({ file: base, env, overrides: { nodeId: 'fromflag', 'raft.tickMs': '50', log: { level: 'error' }, dataDir: undefined } });
    expect(c2.nodeId).toBe('fromflag');
    expect(c2.raft.tickMs).toBe(50);
    expect(c2.log.level).toBe('error');
    expect(c2.listen.httpPort).toBe(9200); // env still applies where no flag was given
    expect(c2.raft.preVote).toBe(false);
  });

  it('flags accept Mooncake aliases too', () => {
    const c = loadConfig({ env: {}, overrides: { nodeId: 'x', client_ttl: '3', metrics_port: 9300 } });
    expect(c.clientTtlMs).toBe(3000);
    expect(c.listen.httpPort).toBe(9300);
  });

  it('empty env values count as unset, unknown MOORING_ names are ignored', () => {
    const c = loadConfig({ file: base, env: { MOORING_NODE_ID: '', MOORING_REQUIRE_NATIVE: '1' } });
    expect(c.nodeId).toBe('fromfile');
  });

  it('names the env var or override a bad value came from, together with file problems', () => {
    const bad = file('bad.yaml', 'nodeId: a\nraft:\n  tickMz: 1\n');
    try {
      loadConfig({ file: bad, env: { MOORING_RAFT_TICK_MS: 'fast', MOORING_JOIN: 'maybe' }, overrides: { 'listen.httpPort': '99999' } });
      expect.unreachable();
    } catch (e) {
      const problems = (e as ConfigError).problems;
      expect((e as ConfigError).code).toBe(ErrorCode.INVALID_CONFIG);
      expect(problems).toContain('config: raft.tickMs must be an integer ≥ 1 and ≤ 60000, got "fast" (from MOORING_RAFT_TICK_MS)');
      expect(problems.some((p) => p.startsWith('config: join ') && p.includes('MOORING_JOIN'))).toBe(true);
      expect(problems.some((p) => p.startsWith('config: listen.httpPort ') && p.includes('(from override)'))).toBe(true);
      expect(problems.some((p) => p.startsWith('config: raft.tickMz '))).toBe(true);
      expect((e as Error).message).toContain(bad);
    }
  });

  it('a missing file is an INVALID_CONFIG problem naming the file', () => {
    expect(() => loadConfig({ file: join(dir, 'nope.yaml'), env: {} })).toThrow(/nope\.yaml.*not readable \(ENOENT\)/);
  });

  it('works with env alone (no file)', () => {
    expect(loadConfig({ env: { MOORING_NODE_ID: 'solo', MOORING_DATA_DIR: '/tmp/solo' } }).dataDir).toBe('/tmp/solo');
  });
});

describe('listConfigFields', () => {
  it('lists every scalar field with its MOORING_ env var', () => {
    const fields = listConfigFields();
    const byPath = new Map(fields.map((f) => [f.path, f.envVar]));
    expect(byPath.get('nodeId')).toBe('MOORING_NODE_ID');
    expect(byPath.get('dataDir')).toBe('MOORING_DATA_DIR');
    expect(byPath.get('log.level')).toBe('MOORING_LOG_LEVEL');
    expect(byPath.get('raft.electionTimeoutTicks')).toBe('MOORING_RAFT_ELECTION_TIMEOUT_TICKS');
    expect(byPath.get('peers')).toBeNull();
    // Every env var actually works.
    for (const f of fields) {
      if (!f.envVar || f.kind !== 'int') continue;
      const e = (() => {
        try {
          loadConfig({ env: { MOORING_NODE_ID: 'a', [f.envVar!]: 'not-a-number' } });
        } catch (err) {
          return err as ConfigError;
        }
        return undefined;
      })();
      expect(e?.problems.some((p) => p.startsWith(`config: ${f.path} `) && p.includes(f.envVar!)), f.path).toBe(true);
    }
  });
});

describe('hostile keys', () => {
  it('a "__proto__" key is reported as unknown and never changes a prototype', () => {
    const input = JSON.parse('{"nodeId":"a","__proto__":{"polluted":1},"raft":{"__proto__":{"tickMs":1}}}') as Record<string, unknown>;
    const problems = problemsOf(input);
    expect(problems.some((p) => p.startsWith('config: __proto__ '))).toBe(true);
    expect(problems.some((p) => p.startsWith('config: raft.__proto__ '))).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const viaYaml = problemsOf('nodeId: a\n__proto__: {polluted: 1}\n');
    expect(viaYaml.some((p) => p.startsWith('config: __proto__ '))).toBe(true);
  });
});

describe('hostile override keys', () => {
  it('a "__proto__" path in overrides is reported, not followed', () => {
    try {
      loadConfig({ env: {}, overrides: { nodeId: 'a', '__proto__.polluted': 1, constructor: 'x' } });
      expect.unreachable();
    } catch (e) {
      const problems = (e as ConfigError).problems;
      expect(problems.some((p) => p.startsWith('config: __proto__ '))).toBe(true);
      expect(problems.some((p) => p.startsWith('config: constructor '))).toBe(true);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('toRaftCoreOptions', () => {
  it('passes the raft settings through and maps readMode onto readOnlyOption', () => {
    const lease = toRaftCoreOptions(parseConfig({ nodeId: 'a', raft: { electionTimeoutTicks: 9, maxInflightAppends: 7 } }));
    expect(lease).toEqual({
      electionTimeoutTicks: 9,
      heartbeatIntervalTicks: 1,
      preVote: true,
      checkQuorum: true,
      fastFailover: true,
      readOnlyOption: 'lease',
      followerLeaseTicks: 0,
      maxEntriesPerAppend: 512,
      maxBytesPerAppend: 1024 * 1024,
      maxInflightAppends: 7,
      maxInflightBytes: 4 * 1024 * 1024,
    });
    expect(toRaftCoreOptions(parseConfig({ nodeId: 'a', raft: { followerLeaseTicks: 3 } })).followerLeaseTicks).toBe(3);
    const safe = toRaftCoreOptions(parseConfig({ nodeId: 'a', raft: { readMode: 'readIndex', checkQuorum: false } }));
    expect(safe.readOnlyOption).toBe('safe');
    expect(safe.checkQuorum).toBe(false);
  });
});

describe('raft.followerLeaseTicks', () => {
  it('needs lease reads, room under the election timeout, and heartbeats inside the lease; each with a clear line', () => {
    expectProblem({ nodeId: 'a', raft: { followerLeaseTicks: 3, readMode: 'readIndex' } }, 'raft.followerLeaseTicks', "needs raft.readMode 'lease'");
    expectProblem({ nodeId: 'a', raft: { followerLeaseTicks: 4 } }, 'raft.followerLeaseTicks', 'must be at most raft.electionTimeoutTicks - 3 (3)');
    expectProblem({ nodeId: 'a', raft: { followerLeaseTicks: 3, heartbeatIntervalTicks: 3, electionTimeoutTicks: 10 } }, 'raft.followerLeaseTicks', 'lapse between heartbeats');
    expectProblem({ nodeId: 'a', raft: { followerLeaseTicks: -1 } }, 'raft.followerLeaseTicks');
    expect(parseConfig({ nodeId: 'a' }).raft.followerLeaseTicks).toBe(0);
  });
});

describe('repair section', () => {
  it('defaults to repair.ts defaultRepairLimits (declared once, there)', async () => {
    const { defaultRepairLimits } = await import('../../src/master/repair.js');
    const c = parseConfig('nodeId: m1\n');
    expect(c.repair).toEqual(defaultRepairLimits);
    expect(defaultConfig.repair).toEqual(defaultRepairLimits);
    expect(Object.isFrozen(defaultConfig.repair)).toBe(true);
  });

  it('takes limits from the file, env and --set overrides; the rest keep their defaults', () => {
    const c = parseConfig('nodeId: m1\nrepair:\n  maxInFlight: 4\n  bytesPerSecond: 1048576\n');
    expect(c.repair).toMatchObject({ maxInFlight: 4, bytesPerSecond: 1048576, taskTimeoutMs: 30_000, resendMs: 2_000, scanIntervalMs: 1_000 });
    const f = file('repair.yaml', 'nodeId: m1\nrepair:\n  maxInFlight: 4\n  taskTimeoutMs: 60000\n');
    const l = loadConfig({
      file: f,
      env: { MOORING_REPAIR_MAX_IN_FLIGHT: '8', MOORING_REPAIR_SCAN_INTERVAL_MS: '250' },
      overrides: { 'repair.bytesPerSecond': '2097152', repair: { resendMs: 500 } },
    });
    expect(l.repair).toEqual({ maxInFlight: 8, bytesPerSecond: 2097152, taskTimeoutMs: 60_000, resendMs: 500, scanIntervalMs: 250, scanObjectsPerRound: 8_192 });
  });

  it('reports every bad repair value at once, each naming its field', () => {
    const problems = problemsOf({
      nodeId: 'm1',
      repair: { maxInFlight: 0, bytesPerSecond: 1.5, taskTimeoutMs: -1, scanIntervalMs: 'often', maxBytesPerSec: 1 },
    });
    const at = (p: string) => problems.filter((x) => x.startsWith(`config: repair.${p} `));
    expect(at('maxInFlight')[0]).toContain('must be an integer ≥ 1');
    expect(at('bytesPerSecond')[0]).toContain('got 1.5');
    expect(at('taskTimeoutMs')[0]).toContain('got -1');
    expect(at('scanIntervalMs')[0]).toContain('got "often"');
    expect(at('maxBytesPerSec')[0]).toContain('is not a known setting');
    expect(problems).toHaveLength(5);
    // A value in bits (or any unit mistake beyond 1 TiB/s) is out of range.
    expectProblem({ nodeId: 'm1', repair: { bytesPerSecond: 2 ** 41 } }, 'repair.bytesPerSecond', '≤ 1099511627776');
    expectProblem('nodeId: m1\nrepair: 16\n', 'repair', 'must be a mapping');
  });

  it('repair.resendMs must be less than repair.taskTimeoutMs (a task would never be re-sent)', () => {
    expectProblem({ nodeId: 'm1', repair: { resendMs: 30_000 } }, 'repair.resendMs', 'less than repair.taskTimeoutMs (30000)');
    expectProblem({ nodeId: 'm1', repair: { taskTimeoutMs: 1000 } }, 'repair.resendMs', 'got 2000');
    // Only the field's own problem when the other one is itself invalid.
    expect(problemsOf({ nodeId: 'm1', repair: { taskTimeoutMs: 0, resendMs: 5 } })).toHaveLength(1);
  });

  it('a bad env value names its variable', () => {
    let err: ConfigError | undefined;
    try {
      loadConfig({ env: { MOORING_NODE_ID: 'm1', MOORING_REPAIR_BYTES_PER_SECOND: '64MiB' } });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err?.problems).toEqual([expect.stringMatching(/^config: repair\.bytesPerSecond .*got "64MiB" \(from MOORING_REPAIR_BYTES_PER_SECOND\)$/)]);
  });
});
