#!/usr/bin/python3
"""Converts Google's uint8-quantised MobileNetV2 (TFLite) into a float TorchScript MobileNetV2 for torchd.

    /usr/bin/python3 scripts/convert_tflite_mobilenet_v2.py [--data DIR] [--out DIR] [--check]

  --data  the folder with mobilenet_v2_1.0_224_quant.tflite and imagenet_labels.txt
          (default: $TORCHD_DATA/mobilenet_v2, TORCHD_DATA defaulting to ../shared/data beside the repository)
  --out   where to write (default: test/fixtures/models/mobilenet_v2, git-ignored: derived from the data)
  --check also classify the two photos beside the TFLite file and fail unless cat_720p.jpg comes out as a
          cat and parrot.jpg as "macaw" (needs PIL; writes reference.json with the top-5 of each)

Writes, into --out:
  model.pt            TorchScript (torch.jit.script) MobileNetV2, float32, input [N, 3, 224, 224] normalised the
                      ImageNet way ((x/255 - mean) / std, what torchd's image_classifier does by default);
                      output [N, 1000] logits, TFLite's output 0 ("background") dropped
  index_to_name.json  TorchServe's label format {"0": ["n00000000", "tench"], ...} from imagenet_labels.txt
                      (first synonym; the file has no WordNet ids, so they are synthesised like the fixtures')
  reference.json      the input's sha256, the layer count, and (--check) the top-5 of the photos

Only numpy and torch: the FlatBuffer is read directly (schema: tensorflow/lite/schema/schema.fbs). Weights are
dequantised per tensor, real = scale * (q - zero_point); int32 biases, real = scale * q. Activations are kept in
float (no fake quantisation), so probabilities differ slightly from TFLite's uint8 ones. TensorFlow's "SAME"
padding puts the odd pixel after, not before (a 3x3 stride-2 conv on 224 pads 0 top/left and 1 bottom/right),
which PyTorch's symmetric `padding=` cannot express; TFSameConv pads explicitly from the input's size.
The TFLite graph expects inputs in [-1, 1] ((q - 128) / 128); the model's first step maps ImageNet-normalised
input there, so the same image pipeline serves it as ResNet-18.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
from typing import List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

TFLITE_NAME = 'mobilenet_v2_1.0_224_quant.tflite'
TFLITE_SHA256 = '7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# BuiltinOperator codes, TensorType codes, Padding and ActivationFunctionType enums (schema.fbs).
ADD, AVERAGE_POOL_2D, CONV_2D, DEPTHWISE_CONV_2D, RESHAPE, SOFTMAX = 0, 1, 3, 4, 22, 25
OP_NAMES = {ADD: 'ADD', AVERAGE_POOL_2D: 'AVERAGE_POOL_2D', CONV_2D: 'CONV_2D',
            DEPTHWISE_CONV_2D: 'DEPTHWISE_CONV_2D', RESHAPE: 'RESHAPE', SOFTMAX: 'SOFTMAX'}
INT32, UINT8 = 2, 3
SAME, VALID = 0, 1
ACT_NONE, ACT_RELU6 = 0, 3


class ConversionError(Exception):
    pass


# ---------------------------------------------------------------- FlatBuffer reading
class Table:
    """One FlatBuffer table: fields are looked up through its vtable by index (the schema's field order)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from('<i', buf, pos)[0]
        self.nfields = (struct.unpack_from('<H', buf, self.vtable)[0] - 4) // 2

    def _offset(self, field: int) -> int:
        return struct.unpack_from('<H', self.buf, self.vtable + 4 + 2 * field)[0] if field < self.nfields else 0

    def scalar(self, field: int, fmt: str, default=0):
        off = self._offset(field)
        return struct.unpack_from('<' + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, field: int):
        off = self._offset(field)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from('<I', self.buf, at)[0]

    def table(self, field: int):
        at = self._target(field)
        return None if at is None else Table(self.buf, at)

    def _vector(self, field: int):
        at = self._target(field)
        return (at + 4, struct.unpack_from('<I', self.buf, at)[0]) if at is not None else (0, 0)

    def tables(self, field: int) -> List['Table']:
        start, n = self._vector(field)
        return [Table(self.buf, start + 4 * k + struct.unpack_from('<I', self.buf, start + 4 * k)[0]) for k in range(n)]

    def scalars(self, field: int, fmt: str) -> list:
        start, n = self._vector(field)
        return list(struct.unpack_from('<%d%s' % (n, fmt), self.buf, start)) if n else []

    def bytes(self, field: int) -> bytes:
        start, n = self._vector(field)
        return self.buf[start:start + n]

    def string(self, field: int) -> str:
        return self.bytes(field).decode('utf-8')


class TFLiteGraph:
    """The parts of a TFLite model this converter needs: tensors (with their constant data) and operators."""

    def __init__(self, buf: bytes):
        if buf[4:8] != b'TFL3':
            raise ConversionError('not a TFLite FlatBuffer (file identifier %r, expected TFL3)' % buf[4:8])
        model = Table(buf, struct.unpack_from('<I', buf, 0)[0])
        # OperatorCode: deprecated_builtin_code (int8, field 0) and builtin_code (int32, field 3): newer writers fill
        # both, older ones only the first; the larger is the real one.
        self.opcodes = [max(c.scalar(0, 'b'), c.scalar(3, 'i')) for c in model.tables(1)]
        subgraphs = model.tables(2)
        if len(subgraphs) != 1:
            raise ConversionError('expected one subgraph, found %d' % len(subgraphs))
        self.buffers = model.tables(4)
        g = subgraphs[0]
        self.tensors = g.tables(0)
        self.inputs, self.outputs = g.scalars(1, 'i'), g.scalars(2, 'i')
        self.ops = g.tables(3)

    def name(self, t: int) -> str:
        return self.tensors[t].string(3)

    def shape(self, t: int) -> List[int]:
        return self.tensors[t].scalars(0, 'i')

    def quantization(self, t: int):
        q = self.tensors[t].table(4)
        if q is None:
            return None, None
        scale, zero = q.scalars(2, 'f'), q.scalars(3, 'q')
        if len(scale) != 1 or len(zero) > 1:
            raise ConversionError('tensor %s: only per-tensor quantisation is supported (%d scales)' % (self.name(t), len(scale)))
        return scale[0], (zero[0] if zero else 0)

    def dequantised(self, t: int) -> np.ndarray:
        """A constant tensor as float32: uint8 weights scale * (q - zero_point), int32 biases scale * q."""
        tensor = self.tensors[t]
        data = self.buffers[tensor.scalar(2, 'I')].bytes(0)
        if not data:
            raise ConversionError('tensor %s has no constant data' % self.name(t))
        dtype = {UINT8: np.uint8, INT32: np.int32}.get(tensor.scalar(1, 'b'))
        if dtype is None:
            raise ConversionError('tensor %s: unsupported type %d' % (self.name(t), tensor.scalar(1, 'b')))
        q = np.frombuffer(data, dtype=dtype).reshape(self.shape(t)).astype(np.float64)
        scale, zero = self.quantization(t)
        if scale is None:
            raise ConversionError('tensor %s is not quantised' % self.name(t))
        return ((q - zero) * scale).astype(np.float32)


# ---------------------------------------------------------------- the PyTorch model
def tf_same_pads(size: int, kernel: int, stride: int) -> List[int]:
    """TensorFlow SAME padding along one axis: [before, after], the odd pixel after."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total - total // 2]


class TFSameConv(nn.Module):
    """Conv2d (+ optional ReLU6) with TensorFlow's SAME padding, computed from each input's size."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int, groups: int, relu6: bool):
        super().__init__()
        out_ch, in_per_group, k, _ = weight.shape
        self.conv = nn.Conv2d(in_per_group * groups, out_ch, k, stride=stride, groups=groups, bias=True)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            self.conv.bias.copy_(bias)
        self.kernel, self.stride, self.relu6 = k, stride, relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel > 1:
            ph = tf_same_pads(x.shape[2], self.kernel, self.stride)
            pw = tf_same_pads(x.shape[3], self.kernel, self.stride)
            x = F.pad(x, [pw[0], pw[1], ph[0], ph[1]])
        x = self.conv(x)
        return F.hardtanh(x, 0.0, 6.0) if self.relu6 else x


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck: [1x1 expand] → 3x3 depthwise → 1x1 linear projection, + input when shapes allow."""

    def __init__(self, convs: List[TFSameConv], residual: bool):
        super().__init__()
        self.conv = nn.Sequential(*convs)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """features (stem, 17 bottlenecks, 1x1 conv to 1280) → global average pool → 1000 logits."""

    def __init__(self, features: List[nn.Module], classifier_w: torch.Tensor, classifier_b: torch.Tensor):
        super().__init__()
        # ImageNet-normalised x → TFLite's [-1, 1] input: 2 * (x * std + mean) - 1, per channel.
        self.register_buffer('input_scale', (2 * torch.tensor(IMAGENET_STD)).view(1, 3, 1, 1))
        self.register_buffer('input_shift', (2 * torch.tensor(IMAGENET_MEAN) - 1).view(1, 3, 1, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Linear(classifier_w.shape[1], classifier_w.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(classifier_w)
            self.classifier.bias.copy_(classifier_b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x * self.input_scale + self.input_shift)
        # TFLite's AVERAGE_POOL_2D 7x7 VALID on the 7x7 map of a 224 input, i.e. the global mean.
        return self.classifier(x.mean([2, 3]))


# ---------------------------------------------------------------- graph → model
def conv_from_op(g: TFLiteGraph, op: Table, code: int) -> TFSameConv:
    inputs = op.scalars(1, 'i')
    opts = op.table(4)
    if opts is None:
        raise ConversionError('%s without options' % OP_NAMES[code])
    padding = opts.scalar(0, 'b')
    stride_w, stride_h = opts.scalar(1, 'i'), opts.scalar(2, 'i')
    act_field = 3 if code == CONV_2D else 4
    act = opts.scalar(act_field, 'b')
    dil_fields = (4, 5) if code == CONV_2D else (5, 6)
    if any(opts.scalar(f, 'i', 1) != 1 for f in dil_fields):
        raise ConversionError('dilated convolutions are not supported')
    if stride_w != stride_h:
        raise ConversionError('unequal strides %dx%d are not supported' % (stride_h, stride_w))
    if act not in (ACT_NONE, ACT_RELU6):
        raise ConversionError('fused activation %d is not supported (NONE or RELU6 only)' % act)
    w = g.dequantised(inputs[1])
    b = g.dequantised(inputs[2])
    k = w.shape[1]
    if padding != SAME and k > 1:
        raise ConversionError('only SAME padding is supported for %dx%d kernels' % (k, k))
    if code == CONV_2D:
        weight, groups = torch.from_numpy(w).permute(0, 3, 1, 2), 1  # OHWI → OIHW
    else:
        if opts.scalar(3, 'i', 1) != 1:
            raise ConversionError('depth multiplier != 1 is not supported')
        weight = torch.from_numpy(w).permute(3, 0, 1, 2)  # 1HWC → C1HW
        groups = weight.shape[0]
    return TFSameConv(weight.contiguous(), torch.from_numpy(b), stride_w, groups, act == ACT_RELU6)


def build_model(g: TFLiteGraph) -> MobileNetV2:
    """Walks the op list (stem conv, bottlenecks ending in a linear 1x1 conv and maybe ADD, head conv, pool,
    logits conv, reshape, softmax), checking that each op consumes the previous one's output."""
    ops = [(g.opcodes[op.scalar(0, 'I')], op) for op in g.ops]
    for code, _ in ops:
        if code not in OP_NAMES:
            raise ConversionError('unsupported TFLite operator code %d' % code)
    pos, current = 0, g.inputs[0]

    def take(expected):
        nonlocal pos, current
        if pos >= len(ops) or ops[pos][0] not in expected:
            got = OP_NAMES.get(ops[pos][0], ops[pos][0]) if pos < len(ops) else 'end of graph'
            raise ConversionError('op %d: expected %s, found %s' % (pos, '/'.join(OP_NAMES[e] for e in expected), got))
        code, op = ops[pos]
        ins = op.scalars(1, 'i')
        if ins[0] != current and not (code == ADD and current in ins):
            raise ConversionError('op %d (%s) does not consume the previous output' % (pos, OP_NAMES[code]))
        pos += 1
        current = op.scalars(2, 'i')[0]
        return code, op

    features: List[nn.Module] = [conv_from_op(g, take([CONV_2D])[1], CONV_2D)]
    if not features[0].relu6:
        raise ConversionError('the stem convolution has no ReLU6')
    while True:
        # The head conv is the ReLU6 conv followed by the average pool.
        if ops[pos][0] == CONV_2D and pos + 1 < len(ops) and ops[pos + 1][0] == AVERAGE_POOL_2D:
            features.append(conv_from_op(g, take([CONV_2D])[1], CONV_2D))
            break
        block_input, convs = current, []
        while True:
            code, op = take([CONV_2D, DEPTHWISE_CONV_2D])
            convs.append(conv_from_op(g, op, code))
            if not convs[-1].relu6:
                break  # the linear projection ends the bottleneck
        residual = False
        if pos < len(ops) and ops[pos][0] == ADD:
            ins = ops[pos][1].scalars(1, 'i')
            if sorted(ins) != sorted([current, block_input]):
                raise ConversionError('op %d: ADD is not a residual over its bottleneck' % pos)
            opts = ops[pos][1].table(4)
            if opts is not None and opts.scalar(0, 'b') != ACT_NONE:
                raise ConversionError('op %d: ADD with a fused activation is not supported' % pos)
            take([ADD])
            residual = True
        features.append(InvertedResidual(convs, residual))
    _, pool = take([AVERAGE_POOL_2D])
    popts = pool.table(4)
    pooled_in = g.shape(pool.scalars(1, 'i')[0])
    if (popts.scalar(0, 'b') != VALID or popts.scalar(3, 'i') != pooled_in[2] or popts.scalar(4, 'i') != pooled_in[1]):
        raise ConversionError('the average pool is not a global 7x7 VALID pool over its %s input' % pooled_in)
    _, logits = take([CONV_2D])
    head = conv_from_op(g, logits, CONV_2D)
    if head.kernel != 1 or head.relu6:
        raise ConversionError('the logits layer is not a linear 1x1 convolution')
    take([RESHAPE])
    take([SOFTMAX])  # dropped: torchd's handlers apply softmax themselves
    if pos != len(ops) or current != g.outputs[0]:
        raise ConversionError('ops after the softmax, or the softmax is not the graph output')
    w = head.conv.weight.detach()[:, :, 0, 0]
    b = head.conv.bias.detach()
    if w.shape[0] != 1001:
        raise ConversionError('expected 1001 outputs (background + 1000 classes), found %d' % w.shape[0])
    # Output 0 is "background": dropped so that index i is ImageNet class i, as index_to_name.json says.
    return MobileNetV2(features, w[1:].clone(), b[1:].clone()).eval()


# ---------------------------------------------------------------- checks with the photos
def preprocess(path: str) -> torch.Tensor:
    """torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize, done with PIL + numpy."""
    from PIL import Image
    img = Image.open(path).convert('RGB')
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x.unsqueeze(0)


def top5(model, labels, path):
    with torch.no_grad():
        p = torch.softmax(model(preprocess(path)), 1)[0]
    v, i = torch.topk(p, 5)
    return [{'index': int(k), 'label': labels[int(k)], 'probability': round(float(q), 6)} for q, k in zip(v, i)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    data_root = os.environ.get('TORCHD_DATA') or os.path.join(os.path.dirname(ROOT), 'shared', 'data')
    ap.add_argument('--data', default=os.path.join(data_root, 'mobilenet_v2'))
    ap.add_argument('--out', default=os.path.join(ROOT, 'test', 'fixtures', 'models', 'mobilenet_v2'))
    ap.add_argument('--check', action='store_true')
    args = ap.parse_args()
    torch.set_num_threads(1)
    src = os.path.join(args.data, TFLITE_NAME)
    with open(src, 'rb') as f:
        buf = f.read()
    digest = hashlib.sha256(buf).hexdigest()
    if digest != TFLITE_SHA256:
        sys.exit('%s: sha256 %s, expected %s (a different file; refusing to convert it)' % (src, digest, TFLITE_SHA256))
    try:
        model = build_model(TFLiteGraph(buf))
    except ConversionError as e:
        sys.exit('%s: cannot convert: %s' % (src, e))
    with open(os.path.join(args.data, 'imagenet_labels.txt')) as f:
        lines = [line.strip() for line in f if line.strip()]
    if len(lines) != 1001 or lines[0] != 'background':
        sys.exit('imagenet_labels.txt: expected 1001 lines starting with "background", found %d' % len(lines))
    labels = [line.split(',')[0].strip() for line in lines[1:]]

    os.makedirs(args.out, exist_ok=True)
    scripted = torch.jit.script(model)
    scripted.save(os.path.join(args.out, 'model.pt'))
    with open(os.path.join(args.out, 'index_to_name.json'), 'w') as f:
        json.dump({str(i): ['n%08d' % i, name] for i, name in enumerate(labels)}, f, indent=0)
    ref = {'recipe': 'scripts/convert_tflite_mobilenet_v2.py', 'source': TFLITE_NAME, 'source_sha256': digest,
           'torch': torch.__version__, 'bottlenecks': sum(isinstance(m, InvertedResidual) for m in model.features),
           'input': {'shape': [1, 3, 224, 224], 'normalize': {'mean': IMAGENET_MEAN, 'std': IMAGENET_STD}},
           'outputs': 1000}
    if args.check:
        loaded = torch.jit.load(os.path.join(args.out, 'model.pt'))
        ref['top5'] = {name: top5(loaded, labels, os.path.join(args.data, name)) for name in ('cat_720p.jpg', 'parrot.jpg')}
        cat, parrot = ref['top5']['cat_720p.jpg'][0], ref['top5']['parrot.jpg'][0]
        print(json.dumps(ref['top5'], indent=1))
        if not cat['label'].endswith('cat') or parrot['label'] != 'macaw':
            sys.exit('check failed: cat_720p.jpg → %s, parrot.jpg → %s' % (cat['label'], parrot['label']))
    with open(os.path.join(args.out, 'reference.json'), 'w') as f:
        json.dump(ref, f, indent=1)
    print('wrote %s (MobileNetV2, %d bottlenecks, float32) from %s' % (os.path.join(args.out, 'model.pt'), ref['bottlenecks'], src))


if __name__ == '__main__':
    main()
