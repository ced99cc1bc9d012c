#!/usr/bin/env python3
"""Saves a TorchScript model for cdl-train (model.torchscript), made with PyTorch.

Run it with the python of cdl's venv, whose torch is cdl's LibTorch (scripts/torch-venv.sh):

    "$(scripts/torch-venv.sh)/bin/python" scripts/make_torchscript_model.py MODEL OUT.pt \\
        [--classes 10] [--channels 1] [--size 28]

MODEL is one of:
  cnn         the layout of cdl's built-in cnn (conv-bn-relu-pool twice, fc 128, fc out) with the
              same parameter names, written in PyTorch: it should train as the built-in one does
  mlp         flatten, two hidden layers of 256 with ReLU, linear out (cdl's built-in mlp)
  wrong-out   a cnn whose output has one class too many (for tests of the shape check)
  bigram      a character bigram model for text sets: tokens [N, T] to logits [N, 256, T]
The weights are PyTorch's default initialization from --seed.
"""
import argparse
import warnings

# torch warns at import when numpy, which nothing here uses, is not installed.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
from torch import nn


class Cnn(nn.Module):
    def __init__(self, channels: int, size: int, classes: int, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.fc1 = nn.Linear(2 * width * (size // 4) * (size // 4), 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Mlp(nn.Module):
    def __init__(self, channels: int, size: int, classes: int, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(channels * size * size, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class Bigram(nn.Module):
    def __init__(self, classes: int = 256):
        super().__init__()
        self.table = nn.Embedding(classes, classes)
        nn.init.zeros_(self.table.weight)  # a uniform guess (8 bits per character) to start from

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table(x).transpose(1, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["cnn", "mlp", "wrong-out", "bigram"])
    p.add_argument("out")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--size", type=int, default=28, help="image height and width")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    if a.model == "mlp":
        m = Mlp(a.channels, a.size, a.classes)
    elif a.model == "bigram":
        m = Bigram()
    else:
        m = Cnn(a.channels, a.size, a.classes + (1 if a.model == "wrong-out" else 0))
    torch.jit.script(m).save(a.out)


if __name__ == "__main__":
    main()
