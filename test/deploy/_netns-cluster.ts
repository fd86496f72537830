// A small stand-in for a Kubernetes Service on this machine: torchd replicas, each in a network namespace
// of its own (ip netns + a veth pair, 10.<b>.<i>.2/24 inside, .1 on the host side), behind HAProxy on a
// loopback port with an active health check on the readiness route. Only addresses created here are ever
// contacted. Needs root (CAP_NET_ADMIN); `cannotRun()` says why when it cannot. Not a test file.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnTorchd, type TorchdChild } from '../_torchd-child.js';

const run = promisify(execFile);
const NS_PREFIX = 'torchd-rr-';

/** HAProxy's health check cadence: a replica is out after FALL failed checks INTER_MS apart. */
export const CHECK = { interMs: 200, fall: 2, rise: 2 } as const;

/** Why namespaces, veths or HAProxy cannot be had here, or undefined when they can. */
export function cannotRun(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux-only (platform ${process.platform})`;
  if (process.getuid?.() !== 0) return `creating network namespaces needs root (uid ${process.getuid?.()}); CI runs as root`;
  for (const [bin, pkg] of [['haproxy', 'haproxy'], ['ip', 'iproute2']] as const) {
    try {
      execFileSync(bin, ['-v'], { stdio: 'pipe' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `${bin} is not installed: install Debian's ${pkg} (./scripts/setup does)`;
    }
  }
  const probe = `${NS_PREFIX}probe-${process.pid}`;
  // Everything the cluster needs, tried inside a throwaway namespace: a veth pair (both ends stay inside it)
  // and `ip netns exec` (which remounts /sys, refused in some containers).
  const steps: [string, string[]][] = [
    ['create a network namespace', ['netns', 'add', probe]],
    ['create a veth pair', ['-n', probe, 'link', 'add', 'probe0', 'type', 'veth', 'peer', 'name', 'probe1']],
    ['run a process in a namespace', ['netns', 'exec', probe, 'true']],
  ];
  try {
    for (const [what, args] of steps) {
      try {
        execFileSync('ip', args, { stdio: 'pipe' });
      } catch (err) {
        return `cannot ${what} (ip ${args.join(' ')}): ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`;
      }
    }
  } finally {
    try {
      execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    } catch {
      /* the namespace was never made */
    }
  }
  return undefined;
}

/** Removes namespaces a crashed earlier run left behind (their owner pid is gone). */
export function removeStaleNamespaces(): void {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of out.split('\n')) {
    const name = line.split(' ')[0];
    const m = new RegExp(`^${NS_PREFIX}(\\d+)-\\d+$`).exec(name);
    if (!m) continue;
    let alive = true;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      alive = false;
    }
    if (!alive) execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
}

export interface Replica {
  index: number;
  /** haproxy server name */
  name: string;
  netns: string;
  /** the replica's own address inside its namespace */
  address: string;
  torchd?: TorchdChild;
}

export interface ServerStats {
  name: string;
  status: string;
  /** responses by class, as HAProxy counted them for this server */
  hrsp2xx: number;
  hrsp5xx: number;
  /** requests sent to this server (sessions) */
  total: number;
  /** connection errors, response errors, retries, redispatches, server aborts */
  econ: number;
  eresp: number;
  wretr: number;
  wredis: number;
  srvAbrt: number;
  current: number;
}

export interface Cluster {
  /** http://127.0.0.1:PORT — HAProxy's frontend */
  url: string;
  replicas: Replica[];
  /** Starts torchd in replica i's namespace; resolves once it logged "torchd ready". */
  startReplica(i: number): Promise<void>;
  /** Resolves when HAProxy's health check sees server `name` in `status` (UP / DOWN …). */
  waitForStatus(name: string, status: RegExp, timeoutMs?: number): Promise<number>;
  stats(): Promise<{ backend: ServerStats; servers: ServerStats[] }>;
  /** Kills replicas and HAProxy, deletes the namespaces (also on failure: call it from teardown). */
  close(): Promise<void>;
}

export interface ClusterOptions {
  replicas: number;
  modelStore: string;
  /** --models of every replica */
  models: string;
  /** extra environment of every replica (TS_<KEY> settings) */
  env?: Record<string, string>;
  /** the readiness route HAProxy checks */
  healthPath: string;
  /** inference port inside each namespace */
  port: number;
}

async function freeLoopbackPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Creates namespaces, veths, HAProxy, and starts every replica; waits until HAProxy has them all UP. */
export async function createCluster(options: ClusterOptions): Promise<Cluster> {
  removeStaleNamespaces();
  const dir = await mkdtemp(join(tmpdir(), 'torchd-rr-'));
  // 10.<b>.<i>.0/24 per replica; b from the pid so two runs at once (two checkouts) do not collide.
  const b = 200 + (process.pid % 50);
  const tag = process.pid % 10000;
  const replicas: Replica[] = [];
  const children = new Set<ChildProcess>();
  let haproxy: ChildProcess | undefined;
  let haproxyLog = '';
  const socket = join(dir, 'haproxy.sock');
  let closed = false;

  const close = async () => {
    if (closed) return;
    closed = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (haproxy && haproxy.exitCode === null) haproxy.kill('SIGKILL');
    // Deleting a namespace deletes the veth pair with it (both ends).
    for (const r of replicas) await run('ip', ['netns', 'del', r.netns]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  // A crash of the test process must not leave namespaces behind either.
  const onExit = () => {
    for (const c of children) c.kill('SIGKILL');
    haproxy?.kill('SIGKILL');
    for (const r of replicas) {
      try {
        execFileSync('ip', ['netns', 'del', r.netns], { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    }
  };
  process.once('exit', onExit);

  try {
    for (let i = 0; i < options.replicas; i++) {
      const netns = `${NS_PREFIX}${process.pid}-${i}`;
      const host = `trr${tag}h${i}`;
      const peer = `trr${tag}n${i}`;
      const replica: Replica = { index: i, name: `r${i}`, netns, address: `10.${b}.${i}.2` };
      replicas.push(replica);
      const ip = (...args: string[]) => run('ip', args);
      await ip('netns', 'add', netns);
      await ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
      await ip('link', 'set', peer, 'netns', netns);
      await ip('addr', 'add', `10.${b}.${i}.1/24`, 'dev', host);
      await ip('link', 'set', host, 'up');
      await ip('-n', netns, 'addr', 'add', `${replica.address}/24`, 'dev', peer);
      await ip('-n', netns, 'link', 'set', peer, 'up');
      // management and metrics listen on the namespace's own loopback
      await ip('-n', netns, 'link', 'set', 'lo', 'up');
    }

    const port = await freeLoopbackPort();
    const cfg = [
      'global',
      `  stats socket ${socket} mode 600 level admin`,
      '  maxconn 4096',
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      // As a load balancer in front of pods would: a connection that fails before any byte of the request
      // was sent goes to another replica. Counted per server (wretr / wredis) so a test can see it.
      '  retries 3',
      '  option redispatch 1',
      'frontend torchd',
      `  bind 127.0.0.1:${port}`,
      '  default_backend replicas',
      'backend replicas',
      '  balance roundrobin',
      '  option httpchk',
      `  http-check send meth GET uri ${options.healthPath}`,
      '  http-check expect status 200',
      `  default-server inter ${CHECK.interMs}ms fastinter ${CHECK.interMs}ms downinter ${CHECK.interMs}ms fall ${CHECK.fall} rise ${CHECK.rise}`,
      ...replicas.map((r) => `  server ${r.name} ${r.address}:${options.port} check`),
      '',
    ].join('\n');
    await writeFile(join(dir, 'haproxy.cfg'), cfg);
    haproxy = spawn('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (d) => (haproxyLog += d));
    haproxy.stderr!.on('data', (d) => (haproxyLog += d));

    const statsCsv = async (): Promise<string> => {
      return new Promise((resolve, reject) => {
        const c = connect(socket);
        let out = '';
        c.on('data', (d) => (out += d));
        c.on('end', () => resolve(out));
        c.on('error', reject);
        c.end('show stat\n');
      });
    };
    const stats = async () => {
      const lines = (await statsCsv()).split('\n').filter((l) => l.trim() !== '');
      const header = lines[0].replace(/^# /, '').split(',');
      const rows = lines.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, k) => [header[k], v])));
      const toStats = (row: Record<string, string>): ServerStats => ({
        name: row.svname,
        status: row.status,
        hrsp2xx: Number(row.hrsp_2xx || 0),
        hrsp5xx: Number(row.hrsp_5xx || 0),
        total: Number(row.stot || 0),
        econ: Number(row.econ || 0),
        eresp: Number(row.eresp || 0),
        wretr: Number(row.wretr || 0),
        wredis: Number(row.wredis || 0),
        srvAbrt: Number(row.srv_abrt || 0),
        current: Number(row.scur || 0),
      });
      const backendRows = rows.filter((r) => r.pxname === 'replicas');
      return {
        backend: toStats(backendRows.find((r) => r.svname === 'BACKEND')!),
        servers: backendRows.filter((r) => r.svname !== 'BACKEND').map(toStats),
      };
    };
    const waitForStatus = async (name: string, status: RegExp, timeoutMs = 30_000): Promise<number> => {
      const t0 = Date.now();
      for (;;) {
        if (haproxy?.exitCode !== null) throw new Error(`haproxy exited: ${haproxyLog}`);
        const s = (await stats().catch(() => undefined))?.servers.find((x) => x.name === name);
        if (s && status.test(s.status)) return Date.now() - t0;
        if (Date.now() - t0 > timeoutMs) throw new Error(`haproxy: ${name} not ${status} within ${timeoutMs} ms (last: ${s?.status})`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };

    const startReplica = async (i: number) => {
      const r = replicas[i];
      const cwd = join(dir, r.name);
      await run('mkdir', ['-p', cwd]);
      r.torchd = spawnTorchd(
        ['start', '--model-store', options.modelStore, '--models', options.models,
          '--inference-address', `http://${r.address}:${options.port}`,
          '--management-address', 'http://127.0.0.1:8081', '--metrics-address', 'http://127.0.0.1:8082',
          '--log-level', 'warn'],
        { prefix: ['ip', 'netns', 'exec', r.netns], cwd, env: { ...process.env, ...options.env } },
      );
      children.add(r.torchd.child);
      await waitForListening(r, options.port);
    };

    const cluster: Cluster = {
      url: `http://127.0.0.1:${port}`,
      replicas,
      startReplica,
      waitForStatus,
      stats,
      async close() {
        process.removeListener('exit', onExit);
        await close();
      },
    };
    await Promise.all(replicas.map((_, i) => startReplica(i)));
    for (const r of replicas) await waitForStatus(r.name, /^UP/, 60_000);
    return cluster;
  } catch (err) {
    process.removeListener('exit', onExit);
    await close();
    throw err;
  }
}

/** --log-level warn hides "torchd ready": poll the replica's /ping on its namespace address instead. */
async function waitForListening(r: Replica, port: number, timeoutMs = 90_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (r.torchd!.child.exitCode !== null) throw new Error(`replica ${r.name} exited: ${r.torchd!.stderr().slice(-2000)}`);
    const ok = await fetch(`http://${r.address}:${port}/ping`, { signal: AbortSignal.timeout(2000) }).then((res) => res.ok, () => false);
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`replica ${r.name} not answering /ping within ${timeoutMs} ms: ${r.torchd!.stderr().slice(-2000)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}
