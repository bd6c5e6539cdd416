/**
 * RaftCore throughput: three in-memory cores (MemoryStorage, messages delivered in-process, no I/O, no
 * serialization), one proposer calling proposeBatch on the leader. Measures committed (applied on the leader)
 * entries per second for several batch sizes; the proposer keeps at most `maxUncommittedBatches` batches
 * uncommitted so replication is pipelined.
 *   npm run bench:raft-core [-- --json] [-- --seconds N]
 */
import { appendFileSync } from 'node:fs';
import os from 'node:os';
import { RaftCore } from '../src/raft/core/core.js';
import { MemoryStorage } from '../src/raft/core/memory-storage.js';
import type { Message } from '../src/raft/core/types.js';
import { SeededRng } from '../src/util/rng.js';

const json = process.argv.includes('--json');
const secondsArg = process.argv.indexOf('--seconds');
const secondsPerCase = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 2;
const entryDataBytes = 128;
const maxUncommittedBatches = 8;
const batchSizes = [1, 16, 64, 256, 1024];
/** Compact the leader's and followers' in-memory logs every so many entries (keeps memory flat). */
const compactEveryEntries = 100_000;

interface Row {
  batchEntries: number;
  committedEntries: number;
  entriesPerSec: number;
  readies: number;
  messages: number;
  entriesPerAppend: number;
}

function runCase(batchEntries: number): Row {
  const ids = ['a', 'b', 'c'];
  const rng = new SeededRng(42);
  const nodes = ids.map((id) => {
    const storage = MemoryStorage.withVoters(ids);
    const core = new RaftCore({ id, storage, rng: rng.fork(), preVote: true, checkQuorum: true });
    return { id, storage, core, applied: 0 };
  });
  const byId = new Map(nodes.map((n) => [n.id, n]));
  let queue: Message[] = [];
  let readies = 0;
  let messages = 0;
  let appEntries = 0;
  let appMsgs = 0;

  const pump = (): void => {
    for (const n of nodes) {
      while (n.core.hasReady()) {
        const rd = n.core.ready();
        readies++;
        for (const m of rd.messages) queue.push(m);
        if (rd.entries.length > 0) n.storage.append(rd.entries);
        if (rd.hardState !== undefined) n.storage.setHardState(rd.hardState);
        for (const m of rd.persistedMessages) queue.push(m);
        for (const e of rd.committedEntries) if (e.data.length > 0) n.applied++;
        n.core.advance(rd);
      }
    }
    const q = queue;
    queue = [];
    for (const m of q) {
      messages++;
      if (m.type === 'app' && m.entries !== undefined && m.entries.length > 0) {
        appMsgs++;
        appEntries += m.entries.length;
      }
      byId.get(m.to)!.core.step(m);
    }
  };

  // Elect a.
  nodes[0]!.core.campaign();
  for (let i = 0; i < 20; i++) pump();
  const leader = nodes[0]!;
  if (leader.core.status().role !== 'leader') throw new Error('no leader');

  const data = new Uint8Array(entryDataBytes).fill(7);
  const batch = Array.from({ length: batchEntries }, () => data);
  let proposed = 0;
  let lastCompact = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(secondsPerCase * 1e9));
  let iter = 0;
  for (;;) {
    if ((++iter & 15) === 0 && process.hrtime.bigint() >= deadline) break;
    if (proposed - leader.applied < maxUncommittedBatches * batchEntries) {
      leader.core.proposeBatch(batch);
      proposed += batchEntries;
    }
    pump();
    if (leader.applied - lastCompact >= compactEveryEntries) {
      for (const n of nodes) {
        const st = n.core.status();
        const upTo = Math.min(st.applied, leader.core.status().progress!['b']!.match, leader.core.status().progress!['c']!.match) - 1000;
        if (upTo > n.storage.firstIndex()) n.storage.compact(upTo);
      }
      lastCompact = leader.applied;
    }
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  return {
    batchEntries,
    committedEntries: leader.applied,
    entriesPerSec: Math.round(leader.applied / elapsedS),
    readies,
    messages,
    entriesPerAppend: appMsgs > 0 ? Number((appEntries / appMsgs).toFixed(1)) : 0,
  };
}

const loadAtStart = os.loadavg()[0]!.toFixed(2);
const rows: Row[] = [];
for (const b of batchSizes) rows.push(runCase(b));

const cpu = os.cpus()[0]?.model ?? 'unknown';
const cores = os.cpus().length;
const command = `npm run bench:raft-core${secondsArg > 0 ? ` -- --seconds ${secondsPerCase}` : ''}`;
if (json) {
  console.log(JSON.stringify({ bench: 'raft-core', date: new Date().toISOString(), cpu, cores, node: process.version, loadAtStart: Number(loadAtStart), entryDataBytes, secondsPerCase, rows }));
} else {
  const header = '| entries/batch | committed entries | entries/s | readies | messages | entries/append |';
  const lines = [header, '|---:|---:|---:|---:|---:|---:|'];
  for (const r of rows) {
    lines.push(`| ${r.batchEntries} | ${r.committedEntries} | ${r.entriesPerSec} | ${r.readies} | ${r.messages} | ${r.entriesPerAppend} |`);
  }
  console.log(lines.join('\n'));
  const section = [
    '',
    `## raft-core — ${new Date().toISOString().slice(0, 10)}`,
    `Machine: ${cpu}, ${cores} cores, Node ${process.version}. Command: \`${command}\`. Three RaftCores with MemoryStorage in one process, messages handed over in memory (no I/O, no encoding), one proposer using proposeBatch with ${entryDataBytes}-byte entries and at most ${maxUncommittedBatches} batches uncommitted, ${secondsPerCase} s per case. entries/s = entries committed and applied on the leader. Load average at start ${loadAtStart} (shared machine).`,
    '',
    ...lines,
    '',
  ].join('\n');
  appendFileSync(new URL('../../bench/RESULTS.md', import.meta.url), section);
}
