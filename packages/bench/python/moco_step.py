"""The PyTorch side of `pnpm bench --vs-pytorch`.

One benchmark row per process (so peak RSS is the row's own): the MoCo step
written from the paper's pseudocode (He et al. 2020, Algorithm 1) or the raw
encoder step, on a ResNet-18 with the CIFAR stem (3x3 conv stride 1, no
max-pool), fc -> 128, on random inputs of the row's shape. Prints one JSON line.

Usage: python moco_step.py '{"mode": "moco", "height": 32, "width": 32,
  "channels": 3, "batch": 128, "queue": 4096, "warmup": 2, "steps": 5}'
"""

import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.shortcut(x) if self.shortcut is not None else x))


class ResNet18Cifar(nn.Module):
    def __init__(self, channels, dim=128, width=64):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        blocks, cin = [], width
        for stage in range(4):
            planes = width * 2**stage
            for i in range(2):
                blocks.append(BasicBlock(cin, planes, 2 if i == 0 and stage > 0 else 1))
                cin = planes
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, dim)

    def forward(self, x):
        y = self.blocks(self.stem(x))
        return F.normalize(self.fc(y.mean((2, 3))), dim=1)


def main(spec):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    dev = torch.device("cuda" if spec.get("device") == "gpu" else "cpu")
    n, c, h, w = spec["batch"], spec["channels"], spec["height"], spec["width"]
    f_q = ResNet18Cifar(c).to(dev)
    opt = torch.optim.SGD(f_q.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    moco = spec["mode"] == "moco"
    m, tau, K = 0.99, 0.1, spec.get("queue", 4096)
    if moco:
        f_k = ResNet18Cifar(c).to(dev)
        f_k.load_state_dict(f_q.state_dict())
        for p in f_k.parameters():
            p.requires_grad = False
        queue = F.normalize(torch.randn(K, 128, device=dev), dim=1)
        ptr = 0
    target = F.normalize(torch.randn(128, device=dev), dim=0)
    x_q = torch.randn(n, c, h, w, device=dev)
    x_k = torch.randn(n, c, h, w, device=dev)

    def step():
        nonlocal queue, ptr
        if not moco:
            loss = (f_q(x_q) * target).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()
        q = f_q(x_q)  # queries: N x C
        with torch.no_grad():
            k = f_k(x_k)  # keys: N x C, no gradient to keys
        l_pos = (q * k).sum(1, keepdim=True)  # N x 1
        l_neg = q @ queue.t()  # N x K
        logits = torch.cat([l_pos, l_neg], 1) / tau
        labels = torch.zeros(n, dtype=torch.long, device=dev)  # positives are the 0-th
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()  # SGD update: query network
        with torch.no_grad():  # momentum update: key network
            for pk, pq in zip(f_k.parameters(), f_q.parameters()):
                pk.mul_(m).add_(pq, alpha=1 - m)
            idx = (torch.arange(n, device=dev) + ptr) % K  # enqueue the current keys, dequeue the oldest
            queue[idx] = k
            ptr = (ptr + n) % K
        return loss.item()

    times = []
    for i in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        step()
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - t0)

    a = torch.randn(2048, 2048, device=dev)
    b = torch.randn(2048, 2048, device=dev)
    a @ b
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    sync()  # CUDA kernels run asynchronously: wait for them before reading the clock
    gflops = 5 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9
    med = statistics.median(times)
    print(
        json.dumps(
            {
                "framework": "pytorch "
                + torch.__version__
                + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
                "threads": threads,
                "stepSeconds": times,
                "imgPerSec": n / med,
                "peakRssMb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "matmulGflops": gflops,
            }
        )
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
