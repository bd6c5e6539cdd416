import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ErrorCode } from '../../src/errors.js';
import { ConfigError, listConfigFields, loadConfig, parseConfig, type MasterConfig } from '../../src/master/config.js';

// fast-check prints the seed and counterexample on failure; replay with fc.assert(..., { seed, path }).

const fieldPaths = listConfigFields().map((f) => f.path.split('.'));
const keyNames = [...new Set(fieldPaths.flat()), 'id', 'host', 'raftPort', 'rpcPort', 'httpPort', 'client_ttl', 'default_kv_lease_ttl', 'x', '__proto__', 'constructor'];

/** Values of every JSON-ish shape, including ones shaped like the config (known keys, nested). */
const junk = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(null, true, false, 0, -1, 1.5, 65536, Number.NaN, Infinity, '', 'm1', '127.0.0.1', 'lease', '0.9'),
    fc.integer(),
    fc.double(),
    fc.string(),
    fc.array(tie('value'), { maxLength: 4 }),
    tie('object'),
  ),
  object: fc.dictionary(fc.oneof(fc.constantFrom(...keyNames), fc.string()), tie('value'), { maxKeys: 6 }),
}));

function onlyConfigErrors(run: () => unknown): void {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe(ErrorCode.INVALID_CONFIG);
    expect((e as ConfigError).problems.length).toBeGreaterThan(0);
    for (const p of (e as ConfigError).problems) expect(p.startsWith('config: ')).toBe(true);
  }
}

describe('config properties', () => {
  it('arbitrary objects are accepted or rejected with ConfigError, never another exception', () => {
    fc.assert(
      fc.property(junk.object, (obj) => onlyConfigErrors(() => parseConfig(obj))),
      { numRuns: 500 },
    );
  });

  it('arbitrary text (YAML or not) never throws anything but ConfigError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), junk.object.map((o) => stringify(o))), (text) => onlyConfigErrors(() => parseConfig(text))),
      { numRuns: 300 },
    );
  });

  it('arbitrary env and override strings never throw anything but ConfigError', () => {
    const envVars = listConfigFields().flatMap((f) => (f.envVar ? [f.envVar] : []));
    const env = fc.dictionary(fc.constantFrom(...envVars), fc.oneof(fc.string(), fc.integer().map(String)), { maxKeys: 6 });
    const overrides = fc.dictionary(fc.constantFrom(...listConfigFields().map((f) => f.path), 'client_ttl'), fc.oneof(fc.string(), fc.integer(), fc.boolean()), { maxKeys: 4 });
    fc.assert(
      fc.property(env, overrides, (e, o) => onlyConfigErrors(() => loadConfig({ env: { MOORING_NODE_ID: 'n1', ...e }, overrides: o }))),
      { numRuns: 300 },
    );
  });

  it('a resolved config written back as YAML resolves to itself', () => {
    const port = fc.integer({ min: 1, max: 65535 });
    const valid = fc
      .record({
        nodeId: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/),
        listenPorts: fc.uniqueArray(port, { minLength: 3, maxLength: 3 }),
        electionTimeoutTicks: fc.integer({ min: 3, max: 50 }),
        tickMs: fc.integer({ min: 1, max: 1000 }),
        readMode: fc.constantFrom('lease', 'readIndex'),
        high: fc.double({ min: 0.02, max: 1, noNaN: true }),
        strategy: fc.constantFrom('random', 'free-ratio-first', 'zone-spread'),
        peerCount: fc.integer({ min: 0, max: 4 }),
      })
      .map((r) => {
        const peers = Array.from({ length: r.peerCount }, (_, i) => ({
          id: i === 0 ? r.nodeId : `${r.nodeId}-p${i}`,
          host: '127.0.0.1',
          raftPort: 10_000 + i,
          rpcPort: 20_000 + i,
        }));
        return {
          nodeId: r.nodeId,
          listen: { raftPort: r.listenPorts[0], rpcPort: r.listenPorts[1], httpPort: r.listenPorts[2] },
          peers,
          raft: { electionTimeoutTicks: r.electionTimeoutTicks, tickMs: r.tickMs, readMode: r.readMode },
          eviction: { highWatermark: r.high, target: r.high / 2 },
          placement: { strategy: r.strategy },
        };
      });
    fc.assert(
      fc.property(valid, (input) => {
        const once: MasterConfig = parseConfig(input);
        const twice = parseConfig(stringify(once));
        expect(twice).toEqual(once);
      }),
      { numRuns: 200 },
    );
  });
});
