/**
 * The machine's floor for a message between two processes: a 100-byte ping-pong over loopback TCP (node:net, no
 * Mooring code), its round trip and the CPU each side spends per round trip. Run twice by bench:transport: the two
 * processes pinned to different CPUs (as three masters and a client spread over the cores), then to the same CPU.
 * On a VM, waking a process that sleeps on another vCPU costs an inter-processor interrupt and VM exits; this is
 * the price every cross-process hop of a Raft round (client → leader → followers → leader → client) pays here.
 * And the price of a wakeup alone: an otherwise idle process woken by a timer every 25 ms (a Raft tick's period).
 *   node ping-pong.js server            prints its port, echoes; prints its CPU µs when stdin closes
 *   node ping-pong.js client PORT N     warm-up, then N round trips; prints {rttUs, cpuUsPerRoundTrip, warmUp}
 *   node ping-pong.js timer MS          a 25 ms interval for MS ms, nothing else; prints {wakeups, cpuUsPerWakeup}
 */
import net from 'node:net';

const [mode, portArg, countArg] = process.argv.slice(2);

if (mode === 'server') {
  const server = net.createServer((c) => {
    c.setNoDelay(true);
    c.on('data', (d) => c.write(d));
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address() as net.AddressInfo;
    process.stdout.write(`${addr.port}\n`);
  });
  // The parent closes stdin once the client is done: report the CPU this side spent, then exit.
  const cpu0 = process.cpuUsage();
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => {
    const u = process.cpuUsage(cpu0);
    process.stdout.write(`${JSON.stringify({ cpuUs: u.user + u.system })}\n`);
    process.exit(0);
  });
} else if (mode === 'client') {
  const port = Number(portArg);
  const n = Number(countArg);
  if (!Number.isInteger(port) || !Number.isInteger(n) || n <= 0) throw new Error('usage: ping-pong.js client PORT N');
  const c = net.connect(port, '127.0.0.1');
  c.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    c.once('connect', resolve);
    c.once('error', reject);
  });
  const buf = Buffer.alloc(100);
  const run = (count: number): Promise<void> =>
    new Promise((resolve) => {
      let got = 0;
      let bytes = 0;
      const onData = (d: Buffer): void => {
        // A reply may arrive split or joined: count whole 100-byte echoes.
        bytes += d.byteLength;
        while (bytes >= buf.byteLength) {
          bytes -= buf.byteLength;
          if (++got === count) {
            c.off('data', onData);
            resolve();
            return;
          }
          c.write(buf);
        }
      };
      c.on('data', onData);
      c.write(buf);
    });
  const warmUp = Math.min(1_000, n);
  await run(warmUp);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const elapsedUs = (performance.now() - t0) * 1000;
  const u = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ rttUs: elapsedUs / n, cpuUsPerRoundTrip: (u.user + u.system) / n, warmUp })}\n`);
  c.destroy();
} else if (mode === 'timer') {
  const ms = Number(portArg);
  if (!Number.isInteger(ms) || ms <= 0) throw new Error('usage: ping-pong.js timer MS');
  // Measured after a warm-up second: the process's start-up work (compilation, GC threads) is not a wakeup's.
  let wakeups = 0;
  let cpu0: NodeJS.CpuUsage | null = null;
  const t = setInterval(() => {
    if (cpu0 !== null) wakeups++;
  }, 25);
  setTimeout(() => {
    cpu0 = process.cpuUsage();
    setTimeout(() => {
      clearInterval(t);
      const u = process.cpuUsage(cpu0!);
      process.stdout.write(`${JSON.stringify({ wakeups, cpuUsPerWakeup: (u.user + u.system) / Math.max(1, wakeups) })}\n`);
    }, ms);
  }, 1_000);
} else {
  throw new Error('usage: ping-pong.js server | client PORT N | timer MS');
}
