"""Which compute devices this machine offers, and which ONNX Runtime providers a device name means.

The embedder runs in ONNX Runtime. The CPU wheel (``onnxruntime``, a core dependency)
offers only ``CPUExecutionProvider``; the GPU wheel (``pip install 'iris-labeling[gpu]'``,
``onnxruntime-gpu``, installed *instead of* the CPU one) adds ``CUDAExecutionProvider``,
which is picked whenever it is present. Training runs in torch, which finds CUDA itself.

:func:`describe_devices` is a pure report (no model is loaded, nothing is allocated on a
GPU) for any command that tells the user about the environment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from typing import Any

from iris.errors import ConfigError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

Provider = str | tuple[str, dict[str, Any]]


def _available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def parse_device(name: str) -> tuple[str, int | None]:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` → (kind, index).

    Raises:
        ConfigError: anything else.
    """
    text = name.strip().lower()
    if text in {"auto", "cpu", "cuda"}:
        return text, None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise ConfigError(f"device: got {name!r}, expected auto, cpu, cuda or cuda:N")


def onnx_providers(device: str = "auto", *, available: list[str] | None = None) -> list[Provider]:
    """ONNX Runtime providers for ``device``, best first.

    ``auto`` takes CUDA when the installed ONNX Runtime offers it, CPU otherwise (CPU is
    always last, so ONNX Runtime can fall back for an operator CUDA lacks); ``cpu`` only
    CPU; ``cuda[:N]`` CUDA on GPU N and fails when this ONNX Runtime has no CUDA provider.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        available: providers to choose from (default: what ONNX Runtime reports).

    Raises:
        ConfigError: an unknown device name, or CUDA asked for but not offered.
    """
    kind, index = parse_device(device)
    offered = _available_providers() if available is None else available
    if kind == "cpu" or (kind == "auto" and CUDA not in offered):
        return [CPU]
    if CUDA not in offered:
        raise ConfigError(
            f"device: got {device!r} but ONNX Runtime offers no CUDA provider (it has "
            f"{', '.join(offered) or 'none'}); install the GPU wheel: pip uninstall -y onnxruntime && "
            "pip install 'iris-labeling[gpu]', or use --device auto/cpu"
        )
    cuda: Provider = (CUDA, {"device_id": index}) if index is not None else CUDA
    return [cuda, CPU]


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe_devices() -> dict[str, Any]:
    """What compute this environment offers, as plain data (JSON-ready).

    Keys: ``onnxruntime`` (which wheel and version, its providers, what ``auto`` picks),
    ``torch`` (version, CUDA available, device names), ``ray`` (version or None), and
    ``notes`` (what to do about a missing GPU path, one line each).
    """
    packages = {p: _version(p) for p in ("onnxruntime", "onnxruntime-gpu")}
    offered = _available_providers()
    auto = onnx_providers("auto", available=offered)
    ort_info = {
        "package": next((p for p in ("onnxruntime-gpu", "onnxruntime") if packages[p]), None),
        "version": packages["onnxruntime-gpu"] or packages["onnxruntime"],
        "providers": offered,
        "auto": auto[0] if isinstance(auto[0], str) else auto[0][0],
    }
    torch_info: dict[str, Any] = {"version": _version("torch"), "cuda": False, "devices": []}
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            torch_info["cuda"] = True
            torch_info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    notes = []
    if packages["onnxruntime"] and packages["onnxruntime-gpu"]:
        notes.append(
            "both onnxruntime and onnxruntime-gpu are installed and shadow each other; "
            "keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'iris-labeling[gpu]'"
        )
    if torch_info["cuda"] and CUDA not in offered:
        notes.append(
            "torch sees a GPU but ONNX Runtime has no CUDA provider, so embedding runs on CPU; "
            "pip uninstall -y onnxruntime && pip install 'iris-labeling[gpu]'"
        )
    if packages["onnxruntime-gpu"] and CUDA not in offered:
        notes.append(
            "onnxruntime-gpu is installed but offers no CUDA provider (no GPU, or CUDA/cuDNN missing)"
        )
    return {
        "onnxruntime": ort_info,
        "torch": torch_info,
        "ray": _version("ray"),
        "notes": notes,
    }


def format_devices(info: dict[str, Any]) -> list[str]:
    """:func:`describe_devices` as a few lines for a terminal."""
    ort_info, torch_info = info["onnxruntime"], info["torch"]
    lines = [
        f"ONNX Runtime: {ort_info['package']} {ort_info['version']}, providers "
        f"{', '.join(ort_info['providers'])}; embedding uses {ort_info['auto']}",
        f"torch: {torch_info['version']}, "
        + (f"CUDA: {', '.join(torch_info['devices'])}" if torch_info["cuda"] else "no CUDA device"),
        f"ray: {info['ray'] or 'not installed (pip install iris-labeling[ray])'}",
    ]
    return lines + [f"note: {n}" for n in info["notes"]]
