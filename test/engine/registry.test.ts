// Registry lifecycle with real TorchScript models: versions and defaults, the errors of each call,
// draining on unregister, scaling over one loaded module, health.
import test from 'ava';
import {
  BadRequestError,
  ConflictError,
  ForbiddenError,
  InternalServerError,
  ModelNotFoundError,
  ModelVersionNotFoundError,
  ServiceUnavailableError,
} from '../../src/errors.js';
import type { LoadedModelVersion } from '../../src/engine/registry.js';
import { f32, makeRegistry, specFor, values } from './helpers.js';

test('the first registered version is the default; resolve finds versions or says what is missing', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  t.true(registry.healthy(), 'no models → healthy');
  const v1 = await registry.register(specFor('rows.pt', 'm', '1.0'), {});
  const v2 = await registry.register(specFor('rows.pt', 'm', '2.0'), {});
  t.deepEqual(registry.names(), ['m']);
  t.is(registry.defaultVersion('m'), '1.0');
  t.is(registry.resolve('m'), v1);
  t.is(registry.resolve('m', '2.0'), v2);
  t.deepEqual(registry.versions('m').map((v) => v.spec.version), ['1.0', '2.0']);
  t.true(v1.ready);
  t.true(registry.healthy());
  t.throws(() => registry.resolve('nope'), { instanceOf: ModelNotFoundError, message: 'Model not found: nope' });
  t.throws(() => registry.resolve('m', '3.0'), {
    instanceOf: ModelVersionNotFoundError,
    message: 'Model version: 3.0 does not exist for model: m',
  });
  t.throws(() => registry.setDefault('m', '9'), { instanceOf: ModelVersionNotFoundError });
  registry.setDefault('m', '2.0');
  t.is(registry.resolve('m'), v2);
});

test('registering the same name and version twice → 409 ConflictError, also while the first still loads', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const first = registry.register(specFor('rows.pt', 'dup', '1.0'), {});
  const err = await t.throwsAsync(registry.register(specFor('rows.pt', 'dup', '1.0'), {}), { instanceOf: ConflictError });
  t.is(err?.status, 409);
  t.is(err?.message, 'Model version 1.0 for model dup is already registered.');
  await first;
  await t.throwsAsync(registry.register(specFor('rows.pt', 'dup', '1.0'), {}), { instanceOf: ConflictError });
});

test('a file that is not TorchScript fails to register and leaves no trace', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const err = await t.throwsAsync(registry.register(specFor('make_models.py', 'broken'), {}));
  t.true(err instanceof InternalServerError || err instanceof BadRequestError, String(err));
  t.deepEqual(registry.names(), []);
  // The name is free again.
  await t.notThrowsAsync(registry.register(specFor('rows.pt', 'broken'), {}));
});

test('invalid settings are refused with the key named', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  await t.throwsAsync(registry.register(specFor('rows.pt'), { batchSize: 0 }), {
    instanceOf: BadRequestError,
    message: 'batchSize must be an integer >= 1 (got 0)',
  });
  await t.throwsAsync(registry.register(specFor('rows.pt'), { maxBatchDelay: -1 }), {
    instanceOf: BadRequestError,
    message: 'maxBatchDelay must be >= 0 ms (got -1)',
  });
});

test('unregister refuses the default while other versions exist, then drains in-flight requests', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  await registry.register(specFor('busy.pt', 'b', '1'), {});
  const v2 = await registry.register(specFor('busy.pt', 'b', '2'), {});
  await t.throwsAsync(registry.unregister('b'), {
    instanceOf: ForbiddenError,
    message: 'Cannot remove default version 1 for model b',
  });
  await t.throwsAsync(registry.unregister('b', '7'), { instanceOf: ModelVersionNotFoundError });
  const inflight = v2.batcher.infer([f32([[150]])]);
  const queued = v2.batcher.infer([f32([[1]])]);
  const gone = registry.unregister('b', '2');
  // Unreachable at once, refused for new work, but what was accepted still completes.
  t.throws(() => registry.resolve('b', '2'), { instanceOf: ModelVersionNotFoundError });
  await t.throwsAsync(v2.batcher.infer([f32([[1]])]), { instanceOf: ServiceUnavailableError });
  t.deepEqual(values(await inflight), [300]);
  t.deepEqual(values(await queued), [2]);
  await gone;
  await t.throwsAsync((v2 as LoadedModelVersion).warmUp([f32([[1]])]), { any: true, message: /dispos/i });
  // The default is the last version left: removable, and the name disappears.
  await registry.unregister('b');
  t.throws(() => registry.resolve('b'), { instanceOf: ModelNotFoundError });
  t.deepEqual(registry.names(), []);
});

test('scale resizes the workers over the one loaded module; zero workers is unhealthy and refuses work', async (t) => {
  const registry = makeRegistry();
  t.teardown(() => registry.close());
  const mv = (await registry.register(specFor('rows.pt', 's'), { minWorkers: 1, maxWorkers: 4 })) as LoadedModelVersion;
  t.is(mv.workers, 1);
  t.is(mv.executorThreads, 1);
  await registry.scale('s', undefined, 2, 4);
  t.is(mv.workers, 2);
  t.is(mv.executorThreads, 2);
  t.is(mv.settings.minWorkers, 2);
  t.is(registry.resolve('s'), mv, 'same module, same version object');
  await t.throwsAsync(registry.scale('s', undefined, 3, 1), {
    instanceOf: BadRequestError,
    message: 'max_worker (1) must be >= min_worker (3)',
  });
  await registry.scale('s', '1.0', 0, 0);
  t.false(registry.healthy());
  await t.throwsAsync(mv.batcher.infer([f32([[1, 2, 3, 4]])]), {
    instanceOf: ServiceUnavailableError,
    message: 'No worker is available for model s version 1.0',
  });
  await registry.scale('s', '1.0', 1, 1);
  t.true(registry.healthy());
  t.is((await mv.batcher.infer([f32([[1, 2, 3, 4]])]) as unknown[]).length, 2);
});

test('default workers and intra-op threads never oversubscribe the cores', async (t) => {
  const registry = makeRegistry({ cores: 4 });
  t.teardown(() => registry.close());
  const one = (await registry.register(specFor('rows.pt', 'one'), { minWorkers: 1, maxWorkers: 1 })) as LoadedModelVersion;
  const two = (await registry.register(specFor('rows.pt', 'two'), { minWorkers: 2, maxWorkers: 2 })) as LoadedModelVersion;
  const eight = (await registry.register(specFor('rows.pt', 'eight'), { minWorkers: 8, maxWorkers: 8 })) as LoadedModelVersion;
  t.is(one.threads, 4);
  t.is(two.threads, 2);
  t.is(eight.threads, 1, 'at least one thread per worker');
  for (const mv of [one, two]) t.true(mv.workers * mv.threads <= 4);
});

test('spinMicros reaches every loaded version: calls taken while the worker polls (worker_spin_us), none at 0', async (t) => {
  const polling = makeRegistry({ spinMicros: 1_000_000 });
  const sleeping = makeRegistry({ spinMicros: 0 });
  t.teardown(() => Promise.all([polling.close(), sleeping.close()]));
  const a = (await polling.register(specFor('rows.pt', 'p'), {})) as LoadedModelVersion;
  const b = (await sleeping.register(specFor('rows.pt', 's'), {})) as LoadedModelVersion;
  for (let i = 0; i < 5; i++) {
    const x = [f32([[i, 1, 2, 3]])];
    t.deepEqual(await a.batcher.infer(x), await b.batcher.infer(x), 'the same results either way');
  }
  t.true(a.spinPickups >= 3, `${a.spinPickups} calls taken while polling`);
  t.is(b.spinPickups, 0);
});
