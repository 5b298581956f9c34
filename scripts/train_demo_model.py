#!/usr/bin/env python
"""Train the `demo` model and its independent judge on procedural images (fvcli/models/demo_data.py), deterministically.

Two copies of fvcli.models.demo_net.DemoNet are trained from scratch on images generated on the fly:

    model   torch seed 0, data stream 0  ->  fvcli/weights/demo_seed0.pt        (rendered by `fv ... --model demo`)
    judge   torch seed 1, data stream 1  ->  fvcli/weights/demo_judge_seed1.pt  (scripts/bench_quality.py)

They share nothing but the architecture and the recipe: different initial weights, different training images. Each
is scored on a fresh held-out set (seed EVAL_SEED, never a training seed) and `demo_meta.json` records the classes,
accuracy, seeds, parameter count, training seconds and each file's sha256.

Data seeds: the batch of step k of the model with seed s is `make_batch(BATCH, size, DATA_SEED_STRIDE * (s + 1) + k)`,
so training seeds are >= 10,000,000; every seed below that (EVAL_SEED, the tests' seeds) is held out.

Reproducible bit for bit for the same torch version, thread count (`--threads`, recorded in the metadata) and CPU
instruction set: CPU only, `torch.use_deterministic_algorithms(True)`, every random number drawn from a seeded
generator. The roles train in parallel processes (`--jobs`), one intra-op thread each by default: on a 2-core machine
that is ~3x faster than one process with two threads, whose OpenMP barriers stall whenever another program runs.

    .venv/bin/python scripts/train_demo_model.py                    # both, into fvcli/weights (make demo-model)
    .venv/bin/python scripts/train_demo_model.py --which judge --out /tmp/w
    .venv/bin/python scripts/train_demo_model.py --out /tmp/w --check   # retrain and compare with the shipped files
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fvcli.models.demo_data import DEMO_CLASSES, make_batch  # noqa: E402
from fvcli.outputs import atomic_write_bytes  # noqa: E402
from fvcli.models.demo_net import INPUT_MEAN, INPUT_STD, WIDTHS, build_demo_net, preprocess  # noqa: E402

NATIVE_SIZE = 64
DATA_SEED_STRIDE = 10_000_000  # training seeds of model seed s: [STRIDE * (s + 1), STRIDE * (s + 1) + steps)
EVAL_SEED = 7_654_321  # held out: below DATA_SEED_STRIDE
EVAL_IMAGES = 2000
BATCH = 64
STEPS = 800
LR = 2e-3
WARMUP = 50
WEIGHT_DECAY = 1e-4
SCALE_JITTER = 12  # generate at 64 + U{0..12} px and crop 64: up to ~20% larger patterns, random placement

WHICH = {  # role -> (seed, file name)
    "model": (0, "demo_seed0.pt"),
    "judge": (1, "demo_judge_seed1.pt"),
}
META_FILE = "demo_meta.json"


def train_batch(seed: int, step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training batch of step `step` of model `seed`: images (B, 3, 64, 64) in [0, 1], labels (B,)."""
    data_seed = DATA_SEED_STRIDE * (seed + 1) + step
    rng = np.random.default_rng([data_seed, 1])  # augmentation draws, independent of the images' own stream
    size = NATIVE_SIZE + int(rng.integers(0, SCALE_JITTER + 1))
    x, y = make_batch(batch, size, data_seed)
    if size > NATIVE_SIZE:  # random crop per image
        offs = rng.integers(0, size - NATIVE_SIZE + 1, size=(batch, 2))
        x = torch.stack([img[:, i:i + NATIVE_SIZE, j:j + NATIVE_SIZE] for img, (i, j) in zip(x, offs.tolist())])
    return x, y


def lr_at(step: int, steps: int, peak: float = LR) -> float:
    """Linear warmup, then cosine decay to zero."""
    if step < WARMUP:
        return peak * (step + 1) / WARMUP
    return 0.5 * peak * (1 + math.cos(math.pi * (step - WARMUP) / max(1, steps - WARMUP)))


@torch.no_grad()
def accuracy(net: torch.nn.Module, n: int, seed: int, size: int = NATIVE_SIZE, chunk: int = 250) -> tuple[float, list]:
    """Top-1 accuracy on `make_batch(n, size, seed)` and the confusion matrix (rows: true class)."""
    net.eval()
    x, y = make_batch(n, size, seed)
    pred = torch.cat([net(preprocess(x[i:i + chunk])).argmax(1) for i in range(0, n, chunk)])
    k = len(DEMO_CLASSES)
    conf = torch.zeros(k, k, dtype=torch.int64)
    conf.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return (pred == y).float().mean().item(), conf.tolist()


def train(seed: int, steps: int, batch: int, lr: float = LR,
          log_every: int = 100) -> tuple[torch.nn.Module, float, float]:
    """Train one DemoNet from torch seed `seed` on data stream `seed`. Returns (net, wall seconds, CPU seconds)."""
    torch.manual_seed(seed)
    net = build_demo_net(len(DEMO_CLASSES))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    t0, c0 = time.perf_counter(), time.process_time()
    net.train()
    running = 0.0
    for step in range(steps):
        x, y = train_batch(seed, step, batch)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr)
        loss = F.cross_entropy(net(preprocess(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if log_every and (step + 1) % log_every == 0:
            print(f"  seed {seed} step {step + 1}/{steps} loss {running:.3f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return net, time.perf_counter() - t0, time.process_time() - c0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_atomic(obj, path: Path) -> None:
    """torch.save into memory, write a temporary file in the same directory, then rename: never a truncated file.

    Serializing to a buffer (not to the temporary path) keeps the bytes reproducible: torch names the zip's root
    folder after the file it writes to."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def train_role(role: str, steps: int, batch: int, lr: float, threads: int, eval_images: int) -> tuple[bytes, dict]:
    """Train and score one role in this process; returns (the weight file's bytes, its metadata record)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    seed, fname = WHICH[role]
    print(f"training {role} (seed {seed}): {steps} steps x {batch} images, {threads} thread(s)", flush=True)
    net, seconds, cpu_seconds = train(seed, steps, batch, lr)
    acc, conf = accuracy(net, eval_images, EVAL_SEED)
    sizes = {s: round(accuracy(net, 600, EVAL_SEED + 1, size=s)[0], 4) for s in (48, 96)}
    sd = {k: v.detach().float().contiguous().clone() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(sd, buf)  # to memory: the bytes do not depend on the file name (see save_atomic)
    data = buf.getvalue()
    rec = {
        "file": fname, "seed": seed, "torch_seed": seed,
        "data_seeds": [DATA_SEED_STRIDE * (seed + 1), DATA_SEED_STRIDE * (seed + 1) + steps - 1],
        "steps": steps, "batch": batch, "lr": lr, "optimizer": "AdamW",
        "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
        "accuracy": round(acc, 4), "eval": {"seed": EVAL_SEED, "images": eval_images, "size": NATIVE_SIZE},
        "accuracy_other_sizes": {str(s): a for s, a in sizes.items()},
        "confusion": conf,
        "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "threads": threads, "torch": torch.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "cpu": platform.machine(),
    }
    print(f"{role}: accuracy {acc:.4f} on {eval_images} held-out images (48 px {sizes[48]:.3f}, "
          f"96 px {sizes[96]:.3f}), {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU", flush=True)
    return data, rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "fvcli" / "weights")
    ap.add_argument("--which", choices=("both", "model", "judge"), default="both")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--lr", type=float, default=LR, help="peak learning rate (warmup, then cosine decay)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per role (results depend on it; recorded)")
    ap.add_argument("--jobs", type=int, default=2, help="roles trained in parallel processes (1: one after the other)")
    ap.add_argument("--eval-images", type=int, default=EVAL_IMAGES)
    ap.add_argument("--check", action="store_true",
                    help="also compare the new files' sha256 with the shipped fvcli/weights/demo_meta.json")
    args = ap.parse_args()

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    meta_path = args.out / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    roles = ("model", "judge") if args.which == "both" else (args.which,)
    meta.update({
        "classes": list(DEMO_CLASSES),
        "architecture": "fvcli.models.demo_net.DemoNet",
        "widths": list(WIDTHS),
        "native_size": NATIVE_SIZE,
        "preprocess": {"mean": [INPUT_MEAN] * 3, "std": [INPUT_STD] * 3},
        "param_count": sum(p.numel() for p in build_demo_net(len(DEMO_CLASSES)).parameters()),
    })
    meta.setdefault("models", {})
    job_args = [(role, args.steps, args.batch, args.lr, args.threads, args.eval_images) for role in roles]
    if args.jobs > 1 and len(roles) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(args.jobs, len(roles)), mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(train_role, *zip(*job_args)))
    else:
        results = [train_role(*a) for a in job_args]
    for role, (data, rec) in zip(roles, results):
        path = args.out / rec["file"]
        atomic_write_bytes(path, data)
        torch.load(path, weights_only=True)  # the file must load safely
        assert sha256(path) == rec["sha256"]
        meta["models"][role] = rec
        print(f"{role}: {path} ({rec['bytes']} bytes, sha256 {rec['sha256'][:16]}...)", flush=True)
        atomic_write_bytes(meta_path, (json.dumps(meta, indent=2) + "\n").encode())  # after every model: a later failure keeps what is done
    print(f"total {time.perf_counter() - t0:.0f} s wall", flush=True)
    if args.check:
        shipped = json.loads((ROOT / "fvcli" / "weights" / META_FILE).read_text())["models"]
        same = True
        for role, (_data, rec) in zip(roles, results):
            ok = shipped.get(role, {}).get("sha256") == rec["sha256"]
            same &= ok
            print(f"{role}: {'identical to' if ok else 'DIFFERENT from'} the shipped file "
                  f"(accuracy {rec['accuracy']:.4f} vs shipped {shipped.get(role, {}).get('accuracy')})", flush=True)
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
