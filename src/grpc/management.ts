// org.pytorch.serve.grpc.management.ManagementAPIsService: the REST management operations
// (src/management) with proto3's zero values read as "not given"; `msg` is the REST body's JSON text.
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import {
  describeModel,
  listModels,
  type ManagementResult,
  registerModel,
  scaleWorkers,
  setDefaultVersion,
  unregisterModel,
} from '../management/operations.js';
import { type ServiceOptions, unary } from './calls.js';

/** proto3 has no presence for these fields: 0 / "" mean "use the default", as in TorchServe. */
const given = (n: number): number | undefined => (n > 0 ? n : undefined);
const text = (s: string): string | undefined => (s === '' ? undefined : s);
const msg = (r: ManagementResult) => ({ msg: JSON.stringify(r.body) });

interface Target {
  model_name: string;
  model_version: string;
}

export function torchserveManagementService(o: ServiceOptions): UntypedServiceImplementation {
  const { deps } = o;
  return {
    DescribeModel: unary(o, 'DescribeModel', (req: Target & { customized: boolean }) =>
      msg(describeModel(deps, { name: req.model_name, version: text(req.model_version) })),
    ),
    ListModels: unary(o, 'ListModels', (req: { limit: number; next_page_token: number }) =>
      msg(listModels(deps, { limit: given(req.limit), nextPageToken: given(req.next_page_token) })),
    ),
    RegisterModel: unary(
      o,
      'RegisterModel',
      async (req: {
        url: string;
        model_name: string;
        synchronous: boolean;
        batch_size: number;
        max_batch_delay: number;
        initial_workers: number;
        response_timeout: number;
      }) =>
        msg(
          await registerModel(deps, {
            url: text(req.url),
            modelName: text(req.model_name),
            synchronous: req.synchronous,
            batchSize: given(req.batch_size),
            maxBatchDelay: given(req.max_batch_delay),
            initialWorkers: given(req.initial_workers),
            responseTimeout: given(req.response_timeout),
          }),
        ),
    ),
    ScaleWorker: unary(o, 'ScaleWorker', async (req: Target & { min_worker: number; max_worker: number; synchronous: boolean }) =>
      msg(
        await scaleWorkers(deps, {
          name: req.model_name,
          version: text(req.model_version),
          minWorker: given(req.min_worker),
          maxWorker: given(req.max_worker),
          synchronous: req.synchronous,
        }),
      ),
    ),
    SetDefault: unary(o, 'SetDefault', (req: Target) => msg(setDefaultVersion(deps, { name: req.model_name, version: req.model_version }))),
    UnregisterModel: unary(o, 'UnregisterModel', async (req: Target) =>
      msg(await unregisterModel(deps, { name: req.model_name, version: text(req.model_version) })),
    ),
  };
}
