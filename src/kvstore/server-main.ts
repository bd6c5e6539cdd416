/**
 * Process edge of a KV node: `node dist/src/kvstore/server-main.js --config <file.json>`.
 * - Logs (pino JSON) go to stderr; stdout carries exactly one line, `{"ready":true,...}`, once the node serves.
 * - SIGTERM/SIGINT: a leader hands leadership over, everything closes, exit 0.
 * - The Raft node's 'fatal' event (a durable write failed) exits non-zero at once (crash-stop): the process never
 *   goes on with a log it could not persist; it restarts from what is on disk.
 */
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { KvServer, type KvServerConfig } from './server.js';

/** A graceful stop that takes longer than this is cut short (exit 1) rather than hang a supervisor. */
export const shutdownDeadlineMs = 10_000;

async function main(): Promise<void> {
  const i = process.argv.indexOf('--config');
  if (i < 0 || process.argv[i + 1] === undefined) {
    process.stderr.write('usage: server-main --config <file.json>\n');
    process.exit(2);
  }
  const config = JSON.parse(readFileSync(process.argv[i + 1]!, 'utf8')) as KvServerConfig;
  const logger = pino(
    { level: config.logLevel ?? 'info', base: { pid: process.pid, node: config.id }, formatters: { level: (label) => ({ level: label }) } },
    pino.destination({ dest: 2, sync: true }),
  );
  let server: KvServer;
  try {
    server = await KvServer.start(config, logger);
  } catch (err) {
    logger.fatal({ err: (err as Error).message, code: (err as { code?: string }).code }, 'start failed');
    process.exit(1);
  }
  server.node.on('fatal', (err: Error) => {
    logger.fatal({ err: err.message }, 'raft node stopped on a fatal error; exiting (crash-stop)');
    process.exit(3);
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    setTimeout(() => {
      logger.error({}, 'graceful stop took too long; exiting');
      process.exit(1);
    }, shutdownDeadlineMs).unref();
    server.stop({ transfer: true }).then(
      () => process.exit(0),
      (err) => {
        logger.error({ err: String(err) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.stdout.write(`${JSON.stringify({ ready: true, id: config.id, pid: process.pid, raftPort: server.raftPort, rpcPort: server.rpcPort })}\n`);
}

void main();
