// The built-in handlers as ModelHandler objects, chosen by name once per model version (createModelHandler), plus
// what the service and the protocols share from this layer: the JSON serializer and image-worker shutdown.
import { ImageClassifierHandler } from './image-classifier.js';
import type { HandlerModel, ModelHandler } from './model-handler.js';
import type { HandlerName } from './names.js';
import { TensorHandler } from './tensor-handler.js';

export type { DecodeContext, DecodeLimits, Example, HandlerModel, InputPart, ModelHandler, NamedInput, NamedOutput } from './model-handler.js';
export { HANDLER_NAMES, type HandlerName } from './names.js';
export { outputJson, outputToJson, serializeJson, serializeJsonBuffer, serializeJsonChunks, OrderedJson, softmax, TensorJson, tensorToJson } from './output.js';
export { closeResponseEncoders } from './response-encoder.js';
export { closeImageWorkers, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE } from './image.js';
export { ImageClassifierHandler } from './image-classifier.js';
export { TensorHandler } from './tensor-handler.js';

/** One constructor per built-in handler name: adding a handler is a new class and a line here. */
const FACTORIES: Record<HandlerName, (model: HandlerModel) => ModelHandler> = {
  image_classifier: (model) => new ImageClassifierHandler(model),
  tensor: (model) => new TensorHandler(model),
};

/** The handler object for a model (its `handler.name` is one of HANDLER_NAMES, checked when the archive was read). */
export function createModelHandler(model: HandlerModel): ModelHandler {
  return FACTORIES[model.handler.name](model);
}
