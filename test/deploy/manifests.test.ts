// deploy/ must not drift from the code: every manifest parses (the `yaml` package) and fits the JSON schema
// kept in deploy/schema; ports, probe paths and grace periods agree with what the server settles on (the
// config is resolved by src/config.ts from each manifest's own env, args and config.properties); the
// Dockerfile only RUNs ./scripts/setup and exposes the server's ports.
import test from 'ava';
import { Ajv } from 'ajv';
import { accessSync, constants, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { listenTarget, isLoopback, parseProperties, resolveConfig } from '../../src/config.js';
import type { ServerConfig } from '../../src/config-types.js';
import { HEALTH_PATHS } from '../../src/http/app.js';
import { dockerfileEnv, dockerfileInstructions } from './_dockerfile.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const KSERVE_SAMPLE = join(ROOT, 'test', 'deploy', 'fixtures', 'kserve-config.properties');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(n) ? [p] : [];
  });
}

const files = [...yamlFiles(join(DEPLOY, 'kserve')), ...yamlFiles(join(DEPLOY, 'kubernetes'))];
const docs: { file: string; doc: Obj }[] = [];
for (const file of files) {
  for (const d of YAML.parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (d.errors.length) throw new Error(`${relative(ROOT, file)}: ${d.errors[0].message}`);
    const doc = d.toJS() as Obj | null;
    if (doc) docs.push({ file: relative(ROOT, file), doc });
  }
}
const ofKind = (kind: string) => docs.filter((d) => d.doc.kind === kind);

/** The server's settled config for a container: its env over the image's ENV defaults, a config file, flags. */
function settle(env: { name: string; value?: string }[] = [], properties?: Map<string, string>, modelStore = '/mnt/models/model-store'): ServerConfig {
  const merged: Record<string, string> = { ...dockerfileEnv() };
  for (const e of env) if (e.value !== undefined) merged[e.name] = e.value;
  return resolveConfig({ properties, env: merged, flags: { modelStore } });
}
const portOf = (address: string) => listenTarget(address.includes('://') ? address : `http://${address}`).port;

// ---------------------------------------------------------------- every manifest against the schema

test('every manifest parses and fits deploy/schema/manifests.schema.json', (t) => {
  const schema = JSON.parse(readFileSync(join(DEPLOY, 'schema', 'manifests.schema.json'), 'utf8'));
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
  t.true(docs.length >= 12, `found ${docs.length} documents in ${files.length} files`);
  for (const { file, doc } of docs) {
    const ok = validate(doc);
    t.true(ok, `${file} (${doc.kind}): ${(validate.errors ?? []).map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`).join('; ')}`);
  }
});

test('the schema has teeth: misspelt or wrong fields are refused', (t) => {
  const schema = JSON.parse(readFileSync(join(DEPLOY, 'schema', 'manifests.schema.json'), 'utf8'));
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
  const runtime = structuredClone(ofKind('ClusterServingRuntime')[0].doc);
  runtime.spec.containers[0].readinessProbe.httpGet.paht = '/v2/health/ready';
  t.false(validate(runtime), 'a misspelt probe key');
  const withHook = structuredClone(ofKind('ClusterServingRuntime')[0].doc);
  withHook.spec.containers[0].lifecycle = { preStop: { exec: { command: ['sleep', '5'] } } };
  t.false(validate(withHook), 'a lifecycle hook in the runtime (Knative refuses it)');
  const isvc = structuredClone(ofKind('InferenceService')[0].doc);
  isvc.spec.predictor.model.protocolVersion = 'v3';
  t.false(validate(isvc), 'an unknown protocol version');
  const deployment = structuredClone(ofKind('Deployment')[0].doc);
  deployment.spec.template.spec.containers[0].ports[0].containerPort = '8080';
  t.false(validate(deployment), 'a port as a string');
});

// ---------------------------------------------------------------- KServe

test('ClusterServingRuntime kserve-torchd: formats, protocols, ports, probes and drain agree with the server', (t) => {
  const runtimes = ofKind('ClusterServingRuntime');
  t.is(runtimes.length, 1);
  const rt = runtimes[0].doc;
  t.is(rt.metadata.name, 'kserve-torchd');
  t.deepEqual(rt.spec.supportedModelFormats.map((f: Obj) => f.name).sort(), ['pytorch', 'torchscript']);
  t.deepEqual([...rt.spec.protocolVersions].sort(), ['grpc-v2', 'v1', 'v2']);
  const c = rt.spec.containers[0];
  t.is(c.name, 'kserve-container', 'KServe finds the model server by this name');
  t.deepEqual(c.args.slice(0, 2), ['torchd', '--start']);
  t.true(c.args.includes('--model-store=/mnt/models/model-store'));
  t.true(c.args.includes('--ts-config=/mnt/models/config/config.properties'));

  // Settled as in the pod: KServe's sample config.properties (0.0.0.0:8085 for inference AND management)
  // under the runtime's env.
  const config = settle(c.env, parseProperties(readFileSync(KSERVE_SAMPLE, 'utf8')));
  const http = portOf(config.inferenceAddress);
  t.is(http, 8080, 'KServe sends HTTP to 8080');
  t.deepEqual(c.ports.map((p: Obj) => p.containerPort), [http], 'one container port (Knative exposes one)');
  t.true(isLoopback(listenTarget(config.managementAddress).host), 'management stays inside the pod');
  t.is(Number(rt.spec.annotations['prometheus.kserve.io/port']), portOf(config.metricsAddress));
  t.is(rt.spec.annotations['prometheus.kserve.io/path'], '/metrics');
  for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
    t.is(c[probe].httpGet.port, http, `${probe} port`);
    t.true((HEALTH_PATHS as readonly string[]).includes(c[probe].httpGet.path), `${probe} path is one the server leaves open`);
  }
  t.is(c.readinessProbe.httpGet.path, '/v2/health/ready');
  t.is(c.livenessProbe.httpGet.path, '/v2/health/live');
  // The drain is in-process: readiness must be seen false within drain_delay.
  t.true(config.drainDelay > 0, 'TS_DRAIN_DELAY set (no preStop possible under Knative)');
  t.true(c.readinessProbe.periodSeconds * c.readinessProbe.failureThreshold <= config.drainDelay, 'readiness probe notices within drain_delay');
  t.true(config.informational !== undefined && 'TS_SERVICE_ENVELOPE' in config.informational, 'TS_SERVICE_ENVELOPE is accepted');
  for (const k of ['cpu', 'memory']) t.truthy(c.resources.requests[k], `resources.requests.${k}`);
});

test('InferenceService examples: runtime, grace period ≥ shutdown_timeout + 5, gRPC on h2c, GPU, autoscaling', (t) => {
  const runtime = ofKind('ClusterServingRuntime')[0].doc.spec.containers[0];
  const isvcs = ofKind('InferenceService');
  const byName = new Map(isvcs.map(({ doc }) => [doc.metadata.name as string, doc]));
  t.true(isvcs.length >= 6, `${isvcs.length} InferenceServices`);
  for (const { file, doc } of isvcs) {
    const p = doc.spec.predictor;
    t.is(p.model.runtime, 'kserve-torchd', file);
    const config = settle([...runtime.env, ...(p.model.env ?? [])], parseProperties(readFileSync(KSERVE_SAMPLE, 'utf8')));
    t.true(p.terminationGracePeriodSeconds >= config.shutdownTimeout + 5, `${file}: terminationGracePeriodSeconds ${p.terminationGracePeriodSeconds} ≥ shutdown_timeout ${config.shutdownTimeout} + 5`);
    for (const probe of ['readinessProbe', 'livenessProbe'] as const) {
      if (p.model[probe]) t.is(p.model[probe].httpGet.port, portOf(config.inferenceAddress), `${file} ${probe}`);
    }
  }
  const protocols = new Set(isvcs.map(({ doc }) => doc.spec.predictor.model.protocolVersion));
  for (const v of ['v1', 'v2', 'grpc-v2']) t.true(protocols.has(v), `an example for ${v}`);

  const grpc = isvcs.find(({ doc }) => doc.spec.predictor.model.protocolVersion === 'grpc-v2')!.doc.spec.predictor.model;
  t.deepEqual(grpc.ports.map((x: Obj) => x.name), ['h2c'], 'Knative routes HTTP/2 to the port named h2c');
  const grpcConfig = settle([...runtime.env, ...grpc.env]) as ServerConfig & { grpc?: { inferenceAddress: string } };
  // The gRPC listener's settled address (src/config.ts, once gRPC is in the build) must be the h2c port.
  const grpcPort = grpcConfig.grpc ? portOf(grpcConfig.grpc.inferenceAddress) : 7070;
  if (!grpcConfig.grpc) t.log('gRPC config not in this build: checking h2c against the documented 7070');
  t.is(grpc.ports[0].containerPort, grpcPort);

  const gpu = isvcs.find(({ doc }) => doc.spec.predictor.model.resources?.limits?.['nvidia.com/gpu'] !== undefined)!.doc;
  t.is(String(gpu.spec.predictor.model.resources.limits['nvidia.com/gpu']), '1');
  t.regex(gpu.spec.predictor.model.image, /cuda/);

  const knative = [...byName.values()].find((d) => d.spec.predictor.scaleMetric === 'concurrency')!;
  t.is(knative.metadata.annotations['serving.kserve.io/deploymentMode'], 'Serverless');
  t.is(Number(knative.metadata.annotations['autoscaling.knative.dev/target']), knative.spec.predictor.scaleTarget);
  t.true(knative.spec.predictor.containerConcurrency >= knative.spec.predictor.scaleTarget, 'hard limit ≥ soft target');
  const hpa = [...byName.values()].find((d) => d.spec.predictor.scaleMetric === 'cpu')!;
  t.is(hpa.metadata.annotations['serving.kserve.io/deploymentMode'], 'RawDeployment');
  t.is(hpa.metadata.annotations['serving.kserve.io/autoscalerClass'], 'hpa');
  t.truthy(hpa.spec.predictor.model.resources.requests.cpu, 'cpu utilisation needs a cpu request');
});

// ---------------------------------------------------------------- plain Kubernetes (kustomize base)

test('kustomize base lists every file it has, and nothing it lacks', (t) => {
  const kustomizations = ofKind('Kustomization');
  t.is(kustomizations.length, 1);
  const { file, doc } = kustomizations[0];
  const dir = join(ROOT, dirname(file));
  const listed = [...doc.resources, ...(doc.configMapGenerator ?? []).flatMap((g: Obj) => g.files ?? [])].sort();
  const present = readdirSync(dir).filter((n) => n !== basename(file)).sort();
  t.deepEqual(listed, present);
});

test('Deployment, Service, HPA and PDB agree with each other and with the server', (t) => {
  const deployment = ofKind('Deployment')[0];
  const spec = deployment.doc.spec.template.spec;
  const c = spec.containers[0];
  const dir = join(ROOT, dirname(deployment.file));
  const config = settle(c.env, parseProperties(readFileSync(join(dir, 'config.properties'), 'utf8')), c.env.find((e: Obj) => e.name === 'TS_MODEL_STORE')?.value);
  const portByName = new Map<string, number>(c.ports.map((p: Obj) => [p.name, p.containerPort]));
  t.is(portByName.get('http'), portOf(config.inferenceAddress));
  t.is(portByName.get('metrics'), portOf(config.metricsAddress));
  t.is(Number(deployment.doc.spec.template.metadata.annotations['prometheus.io/port']), portOf(config.metricsAddress));
  t.false([...portByName.values()].includes(portOf(config.managementAddress)), 'management is not exposed');
  t.deepEqual(config.loadModels, ['all'], 'config.properties loads the model store');
  for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
    const port = c[probe].httpGet.port;
    t.is(typeof port === 'string' ? portByName.get(port) : port, portOf(config.inferenceAddress), `${probe} port`);
    t.true((HEALTH_PATHS as readonly string[]).includes(c[probe].httpGet.path), `${probe} path`);
  }
  t.is(c.readinessProbe.httpGet.path, '/v2/health/ready');

  // Drain: a preStop sleep or drain_delay (one, not both); the grace period covers preStop + shutdown_timeout + 5.
  const sleep = c.lifecycle?.preStop?.exec ? Number(c.lifecycle.preStop.exec.command.at(-1)) : (c.lifecycle?.preStop?.sleep?.seconds ?? 0);
  t.is(sleep > 0 ? 1 : 0, config.drainDelay > 0 ? 0 : 1, `exactly one of preStop sleep (${sleep}) and drain_delay (${config.drainDelay})`);
  t.true(spec.terminationGracePeriodSeconds >= sleep + config.shutdownTimeout + 5, `grace ${spec.terminationGracePeriodSeconds} ≥ ${sleep} + ${config.shutdownTimeout} + 5`);
  t.is(deployment.doc.spec.strategy.rollingUpdate.maxUnavailable, 0, 'a rolling update never goes below the replica count');
  // /tmp must be writable: archives are extracted there, and the key file goes there.
  t.true(c.volumeMounts.some((m: Obj) => m.mountPath === '/tmp'));
  t.true(dockerfileEnv().TS_KEY_FILE.startsWith('/tmp/'));

  const labels = deployment.doc.spec.template.metadata.labels;
  const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
  t.true(matches(deployment.doc.spec.selector.matchLabels));
  const service = ofKind('Service')[0].doc;
  t.true(matches(service.spec.selector));
  for (const p of service.spec.ports) t.true(portByName.has(p.targetPort) || [...portByName.values()].includes(p.targetPort), `Service targetPort ${p.targetPort}`);
  const hpa = ofKind('HorizontalPodAutoscaler')[0].doc;
  t.like(hpa.spec.scaleTargetRef, { kind: 'Deployment', name: deployment.doc.metadata.name });
  t.truthy(c.resources.requests.cpu, 'cpu utilisation needs a cpu request');
  t.true(matches(ofKind('PodDisruptionBudget')[0].doc.spec.selector.matchLabels));
  const claim = spec.volumes.find((v: Obj) => v.persistentVolumeClaim)?.persistentVolumeClaim.claimName;
  t.is(claim, ofKind('PersistentVolumeClaim')[0].doc.metadata.name);
});

// ---------------------------------------------------------------- Dockerfile

test('Dockerfile: every RUN is ./scripts/setup; ports, health check, user and init agree with the server', (t) => {
  const ins = dockerfileInstructions();
  const runs = ins.filter((i) => i.op === 'RUN');
  t.true(runs.length >= 3);
  for (const { rest } of runs) t.regex(rest, /^(\w+=\S+\s+)*\.\/scripts\/setup$/, `RUN ${rest}`);

  const config = resolveConfig({ env: dockerfileEnv(), flags: {} });
  const exposed = ins.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.rest.split(/\s+/).map(Number));
  for (const address of [config.inferenceAddress, config.managementAddress, config.metricsAddress]) t.true(exposed.includes(portOf(address)), `EXPOSE ${address}`);
  const grpc = (config as ServerConfig & { grpc?: { inferenceAddress: string; managementAddress: string } }).grpc;
  for (const port of grpc ? [portOf(grpc.inferenceAddress), portOf(grpc.managementAddress)] : [7070, 7071]) t.true(exposed.includes(port), `EXPOSE ${port} (gRPC)`);
  if (grpc) {
    t.is(listenTarget(`http://${grpc.inferenceAddress}`).host, '0.0.0.0', 'gRPC inference reachable from outside the container');
    t.true(isLoopback(listenTarget(`http://${grpc.managementAddress}`).host), 'gRPC management on loopback');
  }
  t.is(listenTarget(config.inferenceAddress).host, '0.0.0.0', 'inference reachable from outside the container');
  t.true(isLoopback(listenTarget(config.managementAddress).host), 'management on loopback');
  t.is(config.modelStore, '/mnt/models/model-store', 'KServe\'s storage initializer puts models there');

  const health = ins.find((i) => i.op === 'HEALTHCHECK')!.rest;
  const url = /http:\/\/127\.0\.0\.1:(\d+)(\/[\w/]+)/.exec(health)!;
  t.is(Number(url[1]), portOf(config.inferenceAddress));
  t.true((HEALTH_PATHS as readonly string[]).includes(url[2]), 'HEALTHCHECK uses a route open without a token');
  t.is(url[2], '/ping');
  const user = ins.filter((i) => i.op === 'USER').at(-1)!.rest;
  t.notRegex(user, /^(root|0)(:|$)/, 'runs as a non-root user');
  t.regex(ins.filter((i) => i.op === 'ENTRYPOINT').at(-1)!.rest, /tini/);

  // What the image runs exists and is executable; the runtime packages are in setup's lists.
  for (const shim of ['torchd', 'torchserve']) t.notThrows(() => accessSync(join(DEPLOY, 'bin', shim), constants.X_OK), shim);
  const setup = readFileSync(join(ROOT, 'scripts', 'setup'), 'utf8');
  t.regex(setup, /RUNTIME_APT_PACKAGES=\([^)]*\btini\b[^)]*\)/);
  t.regex(setup, /APT_PACKAGES\+=\(haproxy iproute2\)/);
});
