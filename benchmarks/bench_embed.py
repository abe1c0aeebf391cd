"""Embedding throughput: ONNX Runtime vs torch eager, same model, same images, one run.

    python benchmarks/bench_embed.py [--images 512] [--batch-size 64] [--image-size 128]

For ResNet-18 (random weights: speed does not depend on them) and EfficientNet-Lite0
(ImageNet weights), the headless :class:`~iris.embed.backbones.PixelNet` is exported the
way ``iris embed`` exports it and both runtimes embed the same uint8 batches with the
same number of threads. Images are Fashion-MNIST upscaled to the input size (the Debian
package ``dataset-fashion-mnist``), or scikit-image photos when it is not installed.
Prints a table of images/s and the ORT / torch ratio (target: at least 1.7).
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from PIL import Image

from iris.embed.backbones import build_pixel_net
from iris.embed.export import INPUT_NAME, OUTPUT_NAME, export_onnx

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
MODELS = [("resnet18", "none"), ("efficientnet_lite0", "imagenet")]


def load_images(n: int, size: int) -> npt.NDArray[np.uint8]:
    """``n`` real images as uint8 (n, size, size, 3)."""
    if FASHION.exists():
        raw = gzip.decompress(FASHION.read_bytes())
        gray = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:n]
        sources = [Image.fromarray(g) for g in gray]
    else:
        from skimage import data

        photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
        sources = [Image.fromarray(photos[i % len(photos)]) for i in range(n)]
    resized = [s.convert("RGB").resize((size, size), Image.Resampling.BILINEAR) for s in sources]
    return np.stack([np.array(r) for r in resized])


def throughput(
    runs: dict[str, Callable[[npt.NDArray[np.uint8]], object]], pixels: npt.NDArray[np.uint8], batch_size: int
) -> dict[str, float]:
    """Images per second of each ``run(batch)`` over all of ``pixels``.

    The runtimes take turns batch by batch (after one warm-up batch each), so a busy
    shared machine slows them alike and the ratio stays meaningful.
    """
    spent = dict.fromkeys(runs, 0.0)
    for run in runs.values():
        run(pixels[:batch_size])
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size]
        for name, run in runs.items():
            began = time.perf_counter()
            run(batch)
            spent[name] += time.perf_counter() - began
    return {name: len(pixels) / seconds for name, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    pixels = load_images(args.images, args.image_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, weights in MODELS:
            net = build_pixel_net(name, weights=weights, image_size=args.image_size).eval()
            path = export_onnx(net, Path(tmp) / f"{name}.onnx", image_size=args.image_size)
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )

            def run_ort(batch: npt.NDArray[np.uint8], session: ort.InferenceSession = session) -> object:
                return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

            def run_torch(batch: npt.NDArray[np.uint8], net: torch.nn.Module = net) -> object:
                with torch.inference_mode():
                    return net(torch.from_numpy(batch))

            speed = throughput({"ort": run_ort, "torch": run_torch}, pixels, args.batch_size)
            ort_speed, torch_speed = speed["ort"], speed["torch"]
            rows.append((name, ort_speed, torch_speed, ort_speed / torch_speed))

    print(
        f"embedding throughput, {args.images} images at {args.image_size}px, batch {args.batch_size}, "
        f"{args.threads} threads (onnxruntime {ort.__version__}, torch {torch.__version__})"
    )
    print(f"{'backbone':<20} {'ORT img/s':>10} {'torch img/s':>12} {'ORT/torch':>10}")
    for name, ort_speed, torch_speed, ratio in rows:
        print(f"{name:<20} {ort_speed:>10.1f} {torch_speed:>12.1f} {ratio:>9.2f}x")


if __name__ == "__main__":
    main()
