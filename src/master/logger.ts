/**
 * Structured logging: pino, one JSON line per event (`{"level":"info","time":"…","name":…,"nodeId":…,"msg":…}`).
 * `pretty: true` turns lines into short human-readable text for a terminal (no extra dependency).
 */
import { Writable } from 'node:stream';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { LogLevel } from './config.js';

export type { Logger } from 'pino';

export interface CreateLoggerOptions {
  level: LogLevel;
  /** Component name, e.g. 'master'. */
  name: string;
  nodeId?: string;
  /** Where lines go. Default: stdout (fd 1), written synchronously so lines survive a crash. */
  destination?: DestinationStream | NodeJS.WritableStream;
  /** Human-readable lines instead of JSON (for terminals, not for log shippers). */
  pretty?: boolean;
}

export function createLogger(options: CreateLoggerOptions): Logger {
  const base: Record<string, unknown> = { pid: process.pid, name: options.name };
  if (options.nodeId !== undefined) base.nodeId = options.nodeId;
  let dest: DestinationStream | NodeJS.WritableStream = options.destination ?? pino.destination({ dest: 1, sync: true });
  if (options.pretty) dest = prettyStream(dest);
  return pino(
    {
      level: options.level,
      base,
      timestamp: pino.stdTimeFunctions.isoTime,
      // Level as a word: operators grep for "error", not 50.
      formatters: { level: (label) => ({ level: label }) },
    },
    dest as DestinationStream,
  );
}

/** A logger that drops everything (tests and embedders that bring no logger). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

const KNOWN = new Set(['level', 'time', 'msg', 'name', 'nodeId', 'pid', 'hostname']);

/** Reformats each JSON line as `HH:MM:SS.mmm LEVEL name[nodeId] msg key=value …`. */
function prettyStream(out: DestinationStream | NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer | string, _enc, done) {
      const text = chunk.toString();
      for (const line of text.split('\n')) {
        if (line.length === 0) continue;
        let rendered = line;
        try {
          const o = JSON.parse(line) as Record<string, unknown>;
          const time = typeof o.time === 'string' ? o.time.slice(11, 23) : '';
          const who = `${String(o.name ?? '')}${o.nodeId !== undefined ? `[${String(o.nodeId)}]` : ''}`;
          const extras = Object.entries(o)
            .filter(([k]) => !KNOWN.has(k))
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
          rendered = [time, String(o.level ?? '').toUpperCase().padEnd(5), who, String(o.msg ?? ''), ...extras].join(' ');
        } catch {
          // Not JSON: pass through unchanged.
        }
        out.write(rendered + '\n');
      }
      done();
    },
  });
}
