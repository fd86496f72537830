// The image's final stage, assembled on this machine (no Docker engine here): the paths deploy/Dockerfile's
// COPY instructions put under /opt/torchd are laid out in a temporary folder from this checkout (dist/
// compiled fresh with tsconfig.build.json, as setup does), then torchd is started the way KServe's
// torchserve runtime starts it — `torchserve --start …` through the PATH shim — with the image's ENV.
// It proves the image holds everything torchd loads at run time (compiled JS and its worker, the addon,
// package.json, the gRPC .proto files); a file the COPY list forgets makes it fail.
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFile, cp, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { makeModelStore } from '../http/_server.js';
import { clients, rpc } from '../grpc/_grpc.js';
import { dockerfileEnv, finalStage } from './_dockerfile.js';
import { spawnTorchd } from '../_torchd-child.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const IMAGE_ROOT = '/opt/torchd/';

test('the final stage\'s COPY list is enough to serve: `torchserve --start` on the image\'s PATH and ENV', async (t) => {
  t.timeout(300_000);
  const tmp = await mkdtemp(join(tmpdir(), 'torchd-image-'));
  const store = await makeModelStore(['mnist']);
  t.teardown(() => Promise.all([rm(tmp, { recursive: true, force: true }), rm(store, { recursive: true, force: true })]));

  // dist/ as the build stage makes it (setup runs `tsc -p tsconfig.build.json`); never written into the checkout.
  const builtDist = join(tmp, 'build-stage-dist');
  await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', builtDist], { cwd: ROOT });

  const stage = finalStage();
  const workdir = stage.filter((i) => i.op === 'WORKDIR').map((i) => i.rest)[0];
  t.is(workdir, IMAGE_ROOT.replace(/\/$/, ''), 'the built tree lands in /opt/torchd');
  const opt = join(tmp, 'opt', 'torchd');
  const copies = stage.filter((i) => i.op === 'COPY');
  t.true(copies.length >= 5);
  for (const { rest } of copies) {
    const words = rest.split(/\s+/);
    const fromBuild = words[0] === '--from=build';
    const paths = words.filter((w) => !w.startsWith('--'));
    const dest = join(opt, paths.pop()!);
    for (const src of paths) {
      // From the build stage: /opt/torchd/X is this checkout's X (dist/ freshly compiled above); from the
      // build context: the checkout itself.
      t.true(!fromBuild || src.startsWith(IMAGE_ROOT), `COPY --from=build ${src} comes from the build tree`);
      const rel = fromBuild ? src.slice(IMAGE_ROOT.length) : src;
      const target = paths.length > 1 || dest.endsWith('/') ? join(dest, rel.split('/').pop()!) : dest;
      await mkdir(dirname(target), { recursive: true });
      if (rel === 'dist') await cp(builtDist, target, { recursive: true });
      else if (rel === 'node_modules') await symlink(join(ROOT, 'node_modules'), target); // too big to copy
      else if (rel.endsWith('.json') || rel.endsWith('.node')) await copyFile(join(ROOT, rel), target);
      else await cp(join(ROOT, rel), target, { recursive: true });
    }
  }

  // The image's ENV with its listeners moved to free loopback ports and the key file into the temp folder.
  const image = dockerfileEnv();
  const env: NodeJS.ProcessEnv = {
    ...image,
    PATH: `${join(opt, 'deploy', 'bin')}:${process.env.PATH}`,
    HOME: tmp,
    TS_INFERENCE_ADDRESS: 'http://127.0.0.1:0',
    TS_MANAGEMENT_ADDRESS: 'http://127.0.0.1:0',
    TS_METRICS_ADDRESS: 'http://127.0.0.1:0',
    TS_GRPC_INFERENCE_ADDRESS: '127.0.0.1:0',
    TS_GRPC_MANAGEMENT_ADDRESS: '127.0.0.1:0',
    TS_KEY_FILE: join(tmp, 'key_file.json'),
  };
  t.is(image.NODE_ENV, 'production');
  const cwd = join(tmp, 'home');
  await mkdir(cwd);
  // Through the PATH shim, exactly as the runtime's args name it (the program is found by PATH lookup).
  // What runs is the compiled tree: there is no src/ here for bin/torchd.js to fall back to.
  const torchd = spawnTorchd([], {
    cwd,
    env,
    argv: ['torchserve', '--start', `--model-store=${store}`, '--models=mnist=mnist.mar', '--ncs'],
  });
  t.teardown(() => {
    if (torchd.child.exitCode === null) torchd.child.kill('SIGKILL');
  });
  const ready = await torchd.waitFor('torchd ready', 120_000);
  const addresses = ready.addresses as { inference: string; grpcInference: string };
  t.is((await fetch(`${addresses.inference}/ping`)).status, 200);
  const digit = await fetch(`${addresses.inference}/predictions/mnist`, { method: 'PUT', body: await readFile(join(ROOT, 'test/fixtures/models/images/7.png')) });
  t.is(await digit.json(), 7);
  const grpc = clients(addresses.grpcInference);
  t.teardown(() => grpc.close());
  t.deepEqual(await rpc(grpc.health, 'Check', { service: '' }), { status: 'SERVING' }, 'the .proto files are in the image');

  torchd.child.kill('SIGTERM');
  const { code } = await torchd.exited;
  t.is(code, 0, torchd.stderr());
});
