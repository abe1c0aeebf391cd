"""Final-training speed on 2 CPU cores: images/s and the epoch time they imply.

For each backbone × image size: frozen-feature extraction (inference) and fine-tuning
(forward + backward + AdamW step) throughput on batches of 64 random uint8 images, and
the resulting time for the Fashion-MNIST benchmark (12,000 labeled images: 10,800 to
train, 1,200 to validate). Wall clock and process CPU seconds are both printed, because
on a shared machine the wall clock also counts other people's work.

    python benchmarks/bench_train.py [--threads 2] [--batches 3] [--sizes 64,96]
"""

from __future__ import annotations

import argparse
import time

import torch

from iris.train.heads import build_classifier, model_config

TRAIN, VAL = 10_800, 1_200


def measure(backbone: str, size: int, *, batches: int, batch: int = 64) -> dict[str, float]:
    model = build_classifier(
        model_config(backbone=backbone, weights="none", head="linear", image_size=size, model_size=256)
    )
    pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    labels = torch.randint(0, 2, (batch,)).float()
    model.eval()
    with torch.no_grad():
        model(pixels)  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(batches):
            model(pixels)
        infer_wall, infer_cpu = time.perf_counter() - wall, time.process_time() - cpu
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = lambda: (  # noqa: E731
        optimizer.zero_grad(),
        torch.nn.functional.binary_cross_entropy_with_logits(model(pixels), labels).backward(),
        optimizer.step(),
    )
    step()  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        step()
    train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = batches * batch
    infer = n / infer_wall
    train = n / train_wall
    return {
        "infer img/s": infer,
        "train img/s": train,
        "frozen: features s": (TRAIN + VAL) / infer,
        "fine-tune epoch s": TRAIN / train + VAL / infer,
        "cpu s/epoch": TRAIN * train_cpu / n + VAL * infer_cpu / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--sizes", default="64,96")
    parser.add_argument("--backbones", default="efficientnet_lite0,resnet18")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for backbone in args.backbones.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append({"backbone": backbone, "size": size, **measure(backbone, size, batches=args.batches)})
    headers = list(rows[0])
    print("  ".join(f"{h:>18}" for h in headers))
    for row in rows:
        print("  ".join(f"{v:>18.1f}" if isinstance(v, float) else f"{v!s:>18}" for v in row.values()))


if __name__ == "__main__":
    main()
