r"""Issue 18: OpenMP threads that spin vs wait passively when platform processes run side by side.

Two processes each train a ResNet50 (random init) for ``--steps`` steps of 8 images, beside a third process that
busy-loops for the same time (another worker's CPU work), first with ``OMP_WAIT_POLICY`` unset (libgomp's default)
and then ``PASSIVE`` (what `cli/home.configure_environment` sets). Prints each training process's seconds.

    python benchmarks/openmp_wait.py --steps 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

TRAIN = """
import time, torch, torchvision
model = torchvision.models.resnet50(weights=None)
images = torch.randn(8, 3, 224, 224)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
started = time.perf_counter()
for _ in range({steps}):
    optimizer.zero_grad(); model(images).sum().backward(); optimizer.step()
print(round(time.perf_counter() - started, 1))
"""
BUSY = "import time\nstarted = time.time()\nwhile time.time() - started < {seconds}: sum(range(100000))\n"


def side(policy: str | None, steps: int, busy_seconds: float) -> list[float]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    trainers = [subprocess.Popen([sys.executable, "-c", TRAIN.format(steps=steps)], env=env, stdout=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    busy = subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=busy_seconds)], env=env)
    seconds = [float(trainer.communicate()[0].strip()) for trainer in trainers]
    busy.wait()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--busy-seconds", type=float, default=25)
    args = parser.parse_args()
    for policy in (None, "PASSIVE"):
        started = time.perf_counter()
        seconds = side(policy, args.steps, args.busy_seconds)
        print(f"OMP_WAIT_POLICY={policy or 'unset'}: training processes {seconds} s "
              f"(side {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
