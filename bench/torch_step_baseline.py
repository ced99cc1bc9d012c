#!/usr/bin/env python3
"""One training step of cdl's built-in models in plain PyTorch: the baseline of cdl-bench train.

    python bench/torch_step_baseline.py MODEL [--batch 64] [--device cuda] [--steps 100] [--json]

MODEL is cnn, resnet20 or charlm, each written in PyTorch with the layout, parameter names and
initialization of cdl's own (core/models/models.cc, core/models/char_lm.cc; the cnn is the one of
scripts/make_torchscript_model.py), trained as their configs do: SGD with Nesterov momentum and
weight decay for the image models (configs/fmnist_cnn.yaml, configs/fmnist_resnet20_lgreco.yaml),
Adam for the char LM (configs/fortunes_charlm.yaml). A step is cdl's: the batch copied from host
memory to the device, forward, cross-entropy, backward, the optimizer's update; the data are
random (images of --size x --size with --channels, or tokens of --context bytes), so only the
speed means anything. It times --steps steps after --warmup untimed ones (synchronizing the device
before reading the clock) and prints samples/s and the mean step as JSON, on the GPU or the CPU.
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

# torch warns at import when numpy, which nothing here uses, is not installed.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from make_torchscript_model import Cnn  # noqa: E402  (the built-in cnn's layout)


def conv(cin, cout, kernel, stride):
    """cdl's convolutions: bias-free (a batchnorm follows), padding kernel / 2."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class BasicBlock(nn.Module):
    """conv-bn-relu-conv-bn plus a shortcut, a strided 1x1 convolution with batchnorm where the
    shape changes (core/models/models.cc)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv(cout, cout, 3, 1)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut_conv = self.shortcut_bn = None
        if stride != 1 or cin != cout:
            self.shortcut_conv = conv(cin, cout, 1, stride)
            self.shortcut_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
        return torch.relu(y + shortcut)


class ResNet20(nn.Module):
    def __init__(self, channels, classes, width=16, blocks=3):
        super().__init__()
        self.conv1 = conv(channels, width, 3, 1)
        self.bn1 = nn.BatchNorm2d(width)
        stages, cin = [], width
        for cout, stride in ((width, 1), (2 * width, 2), (4 * width, 2)):
            stages.append(nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout,
                                                     stride if i == 0 else 1)
                                          for i in range(blocks)]))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def linear(cin, cout):
    """The char LM's linear layers: weights N(0, 0.02), zero bias (core/models/char_lm.cc)."""
    layer = nn.Linear(cin, cout)
    nn.init.normal_(layer.weight, 0.0, 0.02)
    nn.init.zeros_(layer.bias)
    return layer


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = linear(width, 3 * width)
        self.proj = linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = linear(width, 4 * width)
        self.fc2 = linear(4 * width, width)

    def forward(self, x, mask):
        n, t, width = x.shape
        d = width // self.heads
        q, k, v = self.qkv(self.ln1(x)).view(n, t, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
        attn = torch.softmax(scores + mask, -1) @ v
        h = x + self.proj(attn.transpose(1, 2).reshape(n, t, width))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class CharLm(nn.Module):
    """Tokens [N, T] to logits [N, classes, T]; the output layer is the embedding's transpose."""

    def __init__(self, classes, context, width, layers, heads):
        super().__init__()
        self.embed = nn.Embedding(classes, width)
        self.pos = nn.Parameter(torch.zeros(context, width))
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        nn.init.normal_(self.pos, 0.0, 0.02)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)

    def forward(self, x):
        t = x.shape[1]
        mask = torch.triu(torch.full((t, t), float("-inf"), device=x.device), 1)
        h = self.embed(x) + self.pos[:t]
        for block in self.blocks:
            h = block(h, mask)
        return (self.ln(h) @ self.embed.weight.t()).transpose(1, 2)


def build(a):
    """The model, its optimizer and a function drawing one host batch (inputs, targets)."""
    if a.model == "charlm":
        width = a.width or 64
        if width % a.heads:
            fail(f"{a.heads} heads do not divide the width {width}")
        model = CharLm(256, a.context, width, a.layers, a.heads)
        opt = torch.optim.Adam(model.parameters(), lr=a.lr or 3e-3, weight_decay=0.0)

        def batch():
            tokens = torch.randint(0, 256, (a.batch, a.context + 1))
            return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    else:
        width = a.width or 16
        if a.model == "cnn":
            if a.size % 4:
                fail(f"the cnn needs an image size divisible by 4, got {a.size}")
            model = Cnn(a.channels, a.size, a.classes, width)
        else:
            model = ResNet20(a.channels, a.classes, width)
        opt = torch.optim.SGD(model.parameters(), lr=a.lr or 0.05, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)

        def batch():
            return (torch.randn(a.batch, a.channels, a.size, a.size),
                    torch.randint(0, a.classes, (a.batch,)))
    return model, opt, batch


def fail(msg):
    print(f"torch_step_baseline: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=["cnn", "resnet20", "charlm"])
    ap.add_argument("--batch", type=int, default=None,
                    help="examples per step (default: the model's config, 64 or 32 for charlm)")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--steps", type=int, default=100, help="timed steps")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--width", type=int, default=0,
                    help="cnn, resnet20: first stage's channels (16); charlm: embedding (64)")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=28, help="image height and width")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--context", type=int, default=32, help="charlm: tokens per example")
    ap.add_argument("--layers", type=int, default=2, help="charlm: attention blocks")
    ap.add_argument("--heads", type=int, default=4, help="charlm: attention heads")
    ap.add_argument("--lr", type=float, default=0.0, help="default: the model's config")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if a.batch is None:
        a.batch = 32 if a.model == "charlm" else 64
    if min(a.batch, a.steps, a.channels, a.size, a.classes, a.context, a.layers, a.heads) < 1 \
            or a.warmup < 0 or a.threads < 0 or a.width < 0:
        fail("--batch, --steps, --channels, --size, --classes, --context, --layers and --heads "
             "must be >= 1; --warmup, --threads and --width >= 0")
    try:
        device = torch.device(a.device)
    except RuntimeError as e:
        fail(f"--device {a.device}: {e}")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {a.device}: torch {torch.__version__} sees no CUDA device")
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model, opt, batch = build(a)
    model.to(device).train()
    loss_fn = nn.CrossEntropyLoss()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step():
        x, y = batch()
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - t0
    if not math.isfinite(loss.item()):
        fail(f"the loss is {loss.item()} after {a.warmup + a.steps} steps")
    out = {"tool": "torch_step", "model": a.model, "torch": torch.__version__,
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
           "threads": torch.get_num_threads(), "batch": a.batch, "steps": a.steps,
           "warmup": a.warmup, "parameters": sum(p.numel() for p in model.parameters()),
           "samples_per_s": a.steps * a.batch / seconds, "step_ms": 1e3 * seconds / a.steps}
    if a.model == "charlm":
        out["tokens_per_s"] = out["samples_per_s"] * a.context
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
