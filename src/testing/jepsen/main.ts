/**
 * `npm run jepsen -- --minutes M [--seed S] [--follower-lease-ticks N] [--json]`: runs the fault campaign
 * (campaign.ts) and prints a table, or one JSON object with --json. Exit code 0 only when the history is
 * linearizable, nothing acknowledged was lost and no read returned wrong bytes; 1 on a violation; 2 when the campaign
 * itself could not run.
 */
import { runCampaign } from './campaign.js';

/** A bad flag: one line naming it, exit 2 (no stack trace). */
function usage(msg: string): never {
  process.stderr.write(`jepsen: ${msg}\nusage: npm run jepsen -- --minutes M [--seed S] [--follower-lease-ticks N] [--json]\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const minutes = Number(flag('--minutes') ?? '1');
  if (!(minutes > 0)) usage('--minutes must be a positive number');
  const seedArg = flag('--seed');
  if (seedArg !== undefined && !Number.isSafeInteger(Number(seedArg))) usage('--seed must be an integer');
  const json = argv.includes('--json');
  const leaseArg = flag('--follower-lease-ticks');
  if (leaseArg !== undefined && !(Number.isSafeInteger(Number(leaseArg)) && Number(leaseArg) >= 0)) usage('--follower-lease-ticks must be a non-negative integer');
  const result = await runCampaign({
    durationMs: minutes * 60_000,
    ...(seedArg !== undefined ? { seed: Number(seedArg) } : {}),
    ...(leaseArg !== undefined ? { followerLeaseTicks: Number(leaseArg) } : {}),
    log: (l) => process.stderr.write(`[jepsen ${new Date().toISOString().slice(11, 19)}] ${l}\n`),
  });
  if (json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    const rows: Array<[string, string]> = [
      ['seed', String(result.seed)], ['duration (s)', String(result.durationS)], ['ops', String(result.ops)],
      ['acked puts', String(result.acked)], ['unknown outcomes', String(result.unknown)], ['failed', String(result.failed)],
      ['lost', String(result.lost)], ['wrong bytes', String(result.wrong)], ['linearizable', String(result.linearizable)],
      ['inconclusive keys', String(result.inconclusiveKeys)],
      ['faults', Object.entries(result.faults).map(([k, v]) => `${k}=${v}`).join(' ')],
      ['errors', Object.entries(result.errors).map(([k, v]) => `${k}=${v}`).join(' ')],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(20)} ${v}\n`);
    if (result.counterexample !== undefined) process.stdout.write(`\ncounterexample:\n${result.counterexample}\n`);
    if (result.artifacts !== undefined) process.stdout.write(`\nkept for inspection: ${result.artifacts} (report.json, m*.log, data dirs)\n`);
  }
  const ok = result.linearizable && result.lost === 0 && result.wrong === 0;
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`jepsen campaign failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
