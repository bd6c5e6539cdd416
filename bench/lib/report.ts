/**
 * Shared benchmark helpers: argv flags, percentiles, machine description, a markdown table printer, and appending
 * a dated section to bench/RESULTS.md (append only: other benchmarks' sections are never rewritten).
 */
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from './kv-cluster.js';

export interface BenchArgs {
  json: boolean;
  /** Value of `--name N` as a number, or the default. */
  num(name: string, dflt: number): number;
  has(flag: string): boolean;
}

export function parseArgs(argv = process.argv.slice(2)): BenchArgs {
  return {
    json: argv.includes('--json'),
    has: (flag) => argv.includes(flag),
    num(name, dflt) {
      const i = argv.indexOf(`--${name}`);
      if (i < 0 || argv[i + 1] === undefined) return dflt;
      const v = Number(argv[i + 1]);
      if (!Number.isFinite(v)) throw new Error(`--${name} needs a number`);
      return v;
    },
  };
}

/** Nearest-rank percentile of unsorted samples (p in 0..100); NaN when empty. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function round(n: number, digits = 2): number {
  if (!Number.isFinite(n)) return n;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  node: string;
  loadavg: number[];
  date: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    node: process.version,
    loadavg: os.loadavg().map((x) => round(x, 2)),
    date: new Date().toISOString().slice(0, 10),
  };
}

/** A markdown table (also readable on a terminal). */
export function table(headers: string[], rows: (string | number)[][]): string {
  const fmt = (v: string | number): string => (typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '-') : v);
  const lines = [`| ${headers.join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.map(fmt).join(' | ')} |`);
  return lines.join('\n');
}

/** Appends `## <name> — <date>` with the machine line, the command and `body` to bench/RESULTS.md. */
export function appendResults(name: string, command: string, body: string, m: MachineInfo = machineInfo()): string {
  const file = path.join(repoRoot(), 'bench', 'RESULTS.md');
  const section = [
    '',
    `## ${name} — ${m.date}`,
    `Machine: ${m.cpu}, ${m.cores} cores, Node ${m.node}. Command: \`${command}\`. Load average at start ${m.loadavg.join(' / ')} (the machine is shared with other work; figures vary run to run).`,
    '',
    body.trimEnd(),
    '',
  ].join('\n');
  appendFileSync(file, (existsSync(file) ? '' : '# Benchmark results\n') + section);
  return file;
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux). */
export const procClockTicksPerSec = 100;

/** CPU time (user + system, ms) a process has used so far, from /proc (Linux); NaN when unreadable. */
export function processCpuMs(pid: number | undefined): number {
  const s = processCpuSplitMs(pid);
  return s.userMs + s.sysMs;
}

/** A process's CPU ms so far, user and kernel apart (a message's cost on loopback is mostly kernel). NaN where /proc is missing. */
export function processCpuSplitMs(pid: number | undefined): { userMs: number; sysMs: number } {
  if (pid === undefined) return { userMs: NaN, sysMs: NaN };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { userMs: (Number(rest[11]) * 1000) / procClockTicksPerSec, sysMs: (Number(rest[12]) * 1000) / procClockTicksPerSec };
  } catch {
    return { userMs: NaN, sysMs: NaN };
  }
}

/**
 * Times the threads of a process went to sleep waiting for something (voluntary context switches, summed over its
 * threads from /proc): each is a later wakeup, the costly part of a message on a VM. NaN where /proc is missing.
 */
export function processWakeups(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    let n = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8'));
      if (m !== null) n += Number(m[1]);
    }
    return n;
  } catch {
    return NaN;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
