"""Embedding throughput (images/s): our path vs a bare torchvision loop with the same model, batch and device.

Variants, all in this process on the same input tensor, each with its own copy of the same weights:

- ``ours``: ``embed_images(load_backbone(name, "none"), images, InferenceSettings(batch_size=B, device=D))``,
  i.e. the platform's defaults (eval mode, seeded + deterministic algorithms on CPU, penultimate average-pool
  output, float32 numpy result; on CUDA bf16 autocast + channels_last).
- ``bare``: ``torchvision.models.<name>()`` with ``fc = nn.Identity()``, ``.eval()``, ``torch.inference_mode()``,
  ``model(images[i:i + B].to(D))`` per batch, float32, outputs concatenated (and copied to the host once).

On CUDA two more variants separate the overhead of our code from the effect of AMP/channels_last:

- ``bare_amp_cl``: the bare loop with the same bf16 autocast and channels_last model + inputs as ours.
- ``ours_fp32``: ``embed_images`` with ``InferenceSettings(amp=False, channels_last=False)``.

``--diagnose`` (CPU) adds three variants that locate our CPU overhead: ``bare_det`` (the bare loop under
``torch.use_deterministic_algorithms(True)``, as our ``seeded()`` sets it), ``bare_det_nofill`` (the same with
``torch.utils.deterministic.fill_uninitialized_memory = False``) and ``ours_nofill`` (ours with that flag off).

Timing: a warm-up call of every variant (untimed; it also records the largest feature difference from ``bare``),
then ``--rounds`` rounds; each round times every variant once over all ``--images`` images, rotating which
variant goes first. Reported: the median images/s per variant, the ratio of medians ours / bare, and the median
of the same-round ratios (robust to other load on a shared machine, which hits both sides of a round alike).

Inputs are seeded random N(0, 1) tensors (n, 3, 224, 224), float32, i.e. shaped and scaled like the output of
``network_batch`` (ImageNet-normalised); image content does not change the cost of a dense CNN. Weights are
``"none"`` (seeded random initialisation): the arithmetic per image does not depend on the weight values, and no
pretrained checkpoints are required. The bare models load the very same state dict as ours.

    python benchmarks/embedding_throughput.py --backbones resnet18 resnet50 --images 128 --rounds 7
    python benchmarks/embedding_throughput.py --backbones resnet18 --images 128 --rounds 5 --diagnose
    python benchmarks/embedding_throughput.py --device cuda --backbones resnet50 resnet152 --images 1024
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from cssci_platform.lib.deep import FEATURE_DIMS, InferenceSettings, embed_images, load_backbone, resolve_device

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "embedding_throughput"


def bare_model(name: str, state_dict: dict[str, torch.Tensor], device: torch.device, channels_last: bool) -> nn.Module:
    """``torchvision.models.<name>()`` with our weights, ``fc`` replaced by Identity, in eval mode on ``device``."""
    model = getattr(torchvision.models, name)()
    model.load_state_dict(state_dict)
    model.fc = nn.Identity()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model.eval()


def bare_loop(
    model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device, amp: bool, channels_last: bool
) -> torch.Tensor:
    """The loop anyone would write: inference_mode, per-batch host->device copy, outputs concatenated."""
    cast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    outputs = []
    with torch.inference_mode(), cast:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            batch = batch.to(device, memory_format=torch.channels_last) if channels_last else batch.to(device)
            outputs.append(model(batch))
    return torch.cat(outputs).float().cpu()


@contextlib.contextmanager
def deterministic(fill_uninitialized_memory: bool = True):
    """``torch.use_deterministic_algorithms(True)`` as our ``seeded()`` sets it on CPU; the caller's state after."""
    before = torch.are_deterministic_algorithms_enabled()
    fill_before = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = fill_uninitialized_memory
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        torch.utils.deterministic.fill_uninitialized_memory = fill_before


@contextlib.contextmanager
def no_nan_fill():
    """Leave deterministic algorithms as they are, but do not fill freshly allocated tensors with NaN."""
    before = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = before


def make_variants(
    name: str, batch_size: int, device: torch.device, seed: int, diagnose: bool = False
) -> dict[str, Callable]:
    """name -> f(images) returning float32 host features; every variant owns its own copy of the same weights."""
    backbone = load_backbone(name, "none", seed=seed)
    state = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    ours = InferenceSettings(batch_size=batch_size, device=str(device))
    variants: dict[str, Callable] = {"ours": lambda x: torch.from_numpy(embed_images(backbone, x, ours).features)}
    fp32 = bare_model(name, state, device, channels_last=False)
    variants["bare"] = lambda x: bare_loop(fp32, x, batch_size, device, amp=False, channels_last=False)
    if device.type == "cuda":  # AMP/channels_last only act on CUDA (see InferenceSettings)
        amp_cl = bare_model(name, state, device, channels_last=True)
        variants["bare_amp_cl"] = lambda x: bare_loop(amp_cl, x, batch_size, device, amp=True, channels_last=True)
        backbone32 = load_backbone(name, "none", seed=seed)  # separate copy: ours converts its model in place
        backbone32.model.load_state_dict(state)
        ours32 = InferenceSettings(batch_size=batch_size, device=str(device), amp=False, channels_last=False)
        variants["ours_fp32"] = lambda x: torch.from_numpy(embed_images(backbone32, x, ours32).features)
    if diagnose and device.type == "cpu":
        # what our run_batched adds on CPU: seeded() -> use_deterministic_algorithms(True), which also makes
        # every new tensor (each layer's output) get filled with NaN first (fill_uninitialized_memory)
        def bare_det(x: torch.Tensor) -> torch.Tensor:
            with deterministic():
                return bare_loop(fp32, x, batch_size, device, amp=False, channels_last=False)

        def bare_det_nofill(x: torch.Tensor) -> torch.Tensor:
            with deterministic(fill_uninitialized_memory=False):
                return bare_loop(fp32, x, batch_size, device, amp=False, channels_last=False)

        def ours_nofill(x: torch.Tensor) -> torch.Tensor:
            with no_nan_fill():
                return torch.from_numpy(embed_images(backbone, x, ours).features)

        variants.update(bare_det=bare_det, bare_det_nofill=bare_det_nofill, ours_nofill=ours_nofill)
    return variants


def timed(run: Callable, images: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run(images)  # every variant returns host tensors, so the clock stops after the device has finished
    return time.perf_counter() - start


def bench_backbone(
    name: str,
    images: torch.Tensor,
    batch_size: int,
    rounds: int,
    device: torch.device,
    seed: int,
    diagnose: bool = False,
) -> dict:
    variants = make_variants(name, batch_size, device, seed, diagnose)
    names = list(variants)
    # warm-up (untimed): one full batch and, if the last batch is shorter, one batch of that size
    warm = [images[:batch_size]] + ([images[: len(images) % batch_size]] if len(images) % batch_size else [])
    outputs = {}
    for variant in names:
        for part in warm:
            outputs[variant] = variants[variant](part)
    reference = outputs["bare"]
    agreement = {v: float((outputs[v] - reference).abs().max()) for v in names if v != "bare"}
    if outputs["ours"].shape != (len(warm[-1]), FEATURE_DIMS[name]):
        raise SystemExit(f"unexpected embedding shape {tuple(outputs['ours'].shape)}")

    seconds: dict[str, list[float]] = {v: [] for v in names}
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for variant in order:
            seconds[variant].append(timed(variants[variant], images, device))
        print(
            f"{name} round {index + 1}/{rounds} (first: {order[0]}): "
            + "  ".join(f"{v} {len(images) / seconds[v][-1]:7.2f} img/s" for v in names)
            + f"  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    per_second = {v: [len(images) / s for s in seconds[v]] for v in names}
    median = {v: statistics.median(per_second[v]) for v in names}
    # same-round pairs share whatever else the machine was doing at the time: the robust figure on a shared host
    paired = {v: statistics.median(x / b for x, b in zip(per_second[v], per_second["bare"])) for v in names}
    round_ratios = [o / b for o, b in zip(per_second["ours"], per_second["bare"])]
    result = {
        "backbone": name,
        "images": len(images),
        "batch_size": batch_size,
        "rounds": rounds,
        "seconds": seconds,
        "images_per_s": per_second,
        "median_images_per_s": median,
        "ratio_ours_vs_bare": median["ours"] / median["bare"],
        "per_round_ratio_ours_vs_bare": round_ratios,
        "median_paired_ratio_vs_bare": paired,
        "load_avg_after": os.getloadavg(),
        "max_abs_diff_vs_bare_at_warmup": agreement,
    }
    if device.type == "cuda":
        result["ratio_ours_vs_bare_amp_cl"] = median["ours"] / median["bare_amp_cl"]
        result["ratio_ours_fp32_vs_bare"] = median["ours_fp32"] / median["bare"]
        result["speedup_amp_cl_bare"] = median["bare_amp_cl"] / median["bare"]
    if len(names) > 2:
        print(f"{name} paired ratios vs bare: " + "  ".join(f"{v} {paired[v]:.3f}x" for v in names), flush=True)
    print(
        f"{name}: "
        + "  ".join(f"{v} {median[v]:.2f} img/s" for v in names)
        + f"  -> ours/bare {result['ratio_ours_vs_bare']:.3f}x (paired median {paired['ours']:.3f}x, "
        f"per round {min(round_ratios):.3f}-{max(round_ratios):.3f})"
        + (
            ""
            if device.type != "cuda"
            else f", ours/bare_amp_cl {result['ratio_ours_vs_bare_amp_cl']:.3f}x,"
            f" ours_fp32/bare {result['ratio_ours_fp32_vs_bare']:.3f}x"
        ),
        flush=True,
    )
    return result


def busiest_processes(count: int = 5) -> list[str]:
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []
    own = str(os.getpid())
    return [line.strip()[:160] for line in out[1:] if line.split()[:1] != [own]][:count]


def machine(device: torch.device) -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "load_avg_at_start": os.getloadavg(),
        "busiest_processes_at_start": busiest_processes(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def wait_for_quiet(max_load: float, timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) until the 1-minute load average is below ``max_load``."""
    deadline = time.monotonic() + timeout_s
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} >= {max_load}; waiting", flush=True)
        time.sleep(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"], choices=list(FEATURE_DIMS))
    parser.add_argument("--images", type=int, default=128, help="images per timed call (per round and variant)")
    parser.add_argument("--batch-size", type=int, default=InferenceSettings().batch_size)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per backbone (median reported)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--size", type=int, default=224, help="input height = width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--wait-for-load",
        type=float,
        default=None,
        metavar="LOAD",
        help="before starting, wait (up to 10 min) until the 1-min load average is below LOAD",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="CPU: also time bare + deterministic algorithms (with / without the NaN fill of new "
        "tensors) and ours without the NaN fill",
    )
    parser.add_argument("--out", type=Path, default=WORK / "embedding_throughput.json")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if args.wait_for_load is not None:
        wait_for_quiet(args.wait_for_load, 600)
    info = machine(device)
    print(json.dumps(info), flush=True)
    generator = torch.Generator().manual_seed(args.seed)
    images = torch.randn(args.images, 3, args.size, args.size, generator=generator)
    started = time.perf_counter()
    results = [
        bench_backbone(name, images, args.batch_size, args.rounds, device, args.seed, args.diagnose)
        for name in args.backbones
    ]
    info["load_avg_at_end"] = os.getloadavg()
    info["busiest_processes_at_end"] = busiest_processes()
    info["wall_s"] = time.perf_counter() - started
    columns = list(results[0]["median_images_per_s"])
    print(
        "\n| backbone | "
        + " | ".join(f"{v} img/s" for v in columns)
        + " | ours / bare (ratio of medians) | ours / bare (median of same-round ratios) |"
    )
    print("|---|" + "---:|" * (len(columns) + 2))
    for r in results:
        print(
            f"| {r['backbone']} | "
            + " | ".join(f"{v:.2f}" for v in r["median_images_per_s"].values())
            + f" | {r['ratio_ours_vs_bare']:.3f}x | {r['median_paired_ratio_vs_bare']['ours']:.3f}x |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": info,
                "command": " ".join(sys.argv),
                "inputs": "seeded randn",
                "weights": "none",
                "results": results,
            },
            indent=2,
            default=_jsonable,
        ),
        encoding="utf-8",
    )
    print(f"figures written to {args.out} (load average at end {info['load_avg_at_end'][0]:.2f})")


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    main()
