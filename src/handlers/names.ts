// The built-in handlers by name: the one list the model store, the archiver, the CLI and the handler factory
// (handlers/index.ts, which must implement every name here) all read.

/** Handlers torchd implements (a ModelHandler each, see handlers/model-handler.ts). */
export const HANDLER_NAMES = ['image_classifier', 'tensor'] as const;
export type HandlerName = (typeof HANDLER_NAMES)[number];

export type Preset = 'imagenet' | 'mnist';

/**
 * What the layers below the handlers (model store, registry) may know of a handler without its class: whether it
 * feeds the model preprocessed images (so the image options — channels, mean, std, image_size, crop_size — apply
 * and fix the input's shape). Keyed by every handler name, so a new handler cannot be forgotten here.
 */
export const HANDLER_TRAITS: Readonly<Record<HandlerName, { imageInput: boolean }>> = {
  image_classifier: { imageInput: true },
  tensor: { imageInput: false },
};

/** Names a MANIFEST or `handler.name` may use, with the handler and preset each means. */
export const HANDLER_ALIASES: Readonly<Record<string, { name: HandlerName; preset?: Preset }>> = {
  image_classifier: { name: 'image_classifier' },
  tensor: { name: 'tensor' },
  // TorchServe's MNIST example archives name their handler `mnist` (a subclass of image_classifier).
  mnist: { name: 'image_classifier', preset: 'mnist' },
};
