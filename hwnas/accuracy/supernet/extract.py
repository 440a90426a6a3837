"""The search's winner as a model: one subnet of a trained supernet with its inherited weights
(batch norm recalibrated), optionally fine-tuned, saved as

* ``DIR/model.pt``: a weights-only torch file (a plain dict: ``format``, ``version``, ``arch``,
  ``n_classes``, ``state_dict`` in the layout of :func:`hwnas.builders.torch_model.build_torch`,
  ``meta`` as a JSON string), loaded with ``torch.load(..., weights_only=True)``
  (:func:`load_extracted`);
* ``DIR/model.json``: the metadata (architecture, classes, input size and normalisation,
  validation accuracy inherited and fine-tuned, the supernet and dataset it came from, the
  ONNX check);
* ``DIR/model.onnx``: the same network as an ONNX graph (input ``images`` float32
  ``[batch, 3, height, width]``, normalised as ``model.json`` says; output ``logits``), checked
  against torch on validation images: the largest absolute difference of the logits must stay
  within ``ONNX_ATOL`` (1e-4).

:func:`extract_model` does it; ``hwnas supernet extract`` and ``hwnas search --extract`` call it.
"""

from __future__ import annotations

import io
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ...space import Arch, SearchSpace
from .checkpoint import read_meta
from .evaluation import LoadedSupernet, _accuracy, _calib_batches, load_supernet, recalibrate_bn
from .network import extract_subnet
from .standalone import train_model
from .training import TrainConfig

FORMAT = "hwnas-subnet"
VERSION = 1
MODEL_PT = "model.pt"
MODEL_JSON = "model.json"
MODEL_ONNX = "model.onnx"
ONNX_ATOL = 1e-4
FINETUNE_LR_FRACTION = 0.1
"""Fine-tuning's peak learning rate as a fraction of the supernet's (no warm-up, cosine decay)."""

__all__ = ["ExtractResult", "MODEL_JSON", "MODEL_ONNX", "MODEL_PT", "ONNX_ATOL", "extract_model", "load_extracted"]


@dataclass
class ExtractResult:
    out_dir: Path
    arch: str
    input_hw: tuple[int, int]
    val_images: int
    inherited_accuracy_pct: float
    finetuned_accuracy_pct: float | None
    finetune_epochs: int
    finetune_seconds: float
    onnx_max_abs_diff: float
    files: list[str]

    @property
    def accuracy_pct(self) -> float:
        return self.inherited_accuracy_pct if self.finetuned_accuracy_pct is None else self.finetuned_accuracy_pct


def _loaded(supernet_dir: str | os.PathLike, arch: Arch) -> LoadedSupernet:
    meta = read_meta(supernet_dir)
    try:
        own = SearchSpace.from_dict(meta["space"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"supernet metadata in {supernet_dir} is corrupt ({e})") from None
    try:
        own.validate(arch)
    except ValueError as e:
        raise InputError(f"architecture {arch} is outside the supernet's space in {supernet_dir}: {e}") from None
    return load_supernet(supernet_dir, own)


def _export_onnx(model: nn.Module, x: torch.Tensor, path: Path) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, x[:1], buf, dynamo=False, input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
                          opset_version=17)
    data = buf.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def _onnx_diff(onnx_bytes: bytes, model: nn.Module, x: torch.Tensor) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, so, providers=["CPUExecutionProvider"])
    xs = x.contiguous().numpy()
    with torch.no_grad():
        ref = model(x).numpy()
    got = sess.run(["logits"], {"images": xs})[0]
    return float(np.abs(got - ref).max())


def extract_model(supernet_dir: str | os.PathLike, arch: Arch, out_dir: str | os.PathLike, finetune_epochs: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> ExtractResult:
    """Extract ``arch`` from the supernet in ``supernet_dir`` into ``out_dir`` (module doc).
    With ``finetune_epochs`` it is trained that many more epochs on the supernet's training
    split (learning rate ``FINETUNE_LR_FRACTION`` of the supernet's, cosine, no warm-up)."""
    if finetune_epochs < 0:
        raise InputError(f"--finetune-epochs must be at least 0, got {finetune_epochs}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path {out} is a file, not a directory")
    ls = _loaded(supernet_dir, arch)
    cfg, b = ls.config, ls.batches
    size = b.size_of(arch)
    model = extract_subnet(ls.net, arch).to(memory_format=torch.channels_last)
    recalibrate_bn(model, _calib_batches(b, ls.train_idx, size, cfg.calib_batches, cfg.calib_batch_size, cfg.seed))
    x_val = b.resize(b.tensor(ls.val_idx), size)
    y_val = torch.from_numpy(ls.data.labels[ls.val_idx])
    inherited = _accuracy(model, x_val, y_val)
    finetuned, ft_seconds, ft_cfg = None, 0.0, None
    if finetune_epochs:
        ft_cfg = TrainConfig.from_dict({**cfg.to_dict(), "epochs": finetune_epochs, "lr": cfg.lr * FINETUNE_LR_FRACTION,
                                        "warmup_epochs": 0.0})
        finetuned, ft_seconds = train_model(model, arch, ls.data, ft_cfg, b, ls.train_idx, ls.val_idx, progress)
    model = model.eval().to(memory_format=torch.contiguous_format)
    out.mkdir(parents=True, exist_ok=True)
    onnx_bytes = _export_onnx(model, x_val, out / MODEL_ONNX)
    diff = _onnx_diff(onnx_bytes, model, x_val[:64].contiguous())
    if not diff <= ONNX_ATOL:
        raise RuntimeError(f"the ONNX graph's logits differ from torch's by {diff:.2e} (> {ONNX_ATOL:g})")
    ds = ls.meta["dataset"]
    from ..predictor import checkpoint_id

    meta = {
        "format": FORMAT, "version": VERSION, "arch": str(arch), "n_classes": ls.data.n_classes,
        "classes": list(ls.data.classes),
        "input": {"height": size[0], "width": size[1], "layout": "NCHW float32 RGB",
                  "normalize": "pixels scaled to [0, 1], minus mean, divided by std (per channel)",
                  "mean": ds["mean"], "std": ds["std"],
                  "note": f"trained at {size[0]}x{size[1]} (the space's resolution {arch.resolution} mapped to "
                          f"the dataset's {ls.data.hw[0]}x{ls.data.hw[1]})"},
        "accuracy": {"split": f"validation ({len(ls.val_idx)} images, fraction {cfg.val_fraction}, seed {cfg.seed})",
                     "inherited_top1_pct": inherited, "finetuned_top1_pct": finetuned},
        "finetune": None if ft_cfg is None else {"epochs": finetune_epochs, "seconds": ft_seconds,
                                                  "config": ft_cfg.to_dict()},
        "supernet": {"dir": str(Path(supernet_dir)), "checkpoint": checkpoint_id(supernet_dir),
                     "epochs_done": ls.meta["epochs_done"]},
        "dataset": {"source": ds["source"], "fingerprint": ds["fingerprint"]},
        "onnx": {"file": MODEL_ONNX, "opset": 17, "inputs": "images [batch, 3, height, width]",
                 "outputs": "logits [batch, n_classes]", "max_abs_diff_vs_torch": diff, "tolerance": ONNX_ATOL},
    }
    blob = {"format": FORMAT, "version": VERSION, "arch": str(arch), "n_classes": ls.data.n_classes,
            "state_dict": {k: v.contiguous() for k, v in model.state_dict().items()},
            "meta": json.dumps(meta, sort_keys=True)}
    tmp = out / (MODEL_PT + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, out / MODEL_PT)
    from ...predictors.jsonfile import save_json

    save_json(meta, out / MODEL_JSON)
    return ExtractResult(out, str(arch), size, len(ls.val_idx), inherited, finetuned, finetune_epochs, ft_seconds,
                         diff, [str(out / f) for f in (MODEL_PT, MODEL_JSON, MODEL_ONNX)])


def load_extracted(out_dir: str | os.PathLike) -> tuple[nn.Module, dict]:
    """``(model in eval mode, metadata)`` of an extracted model directory."""
    from ...builders.torch_model import build_torch

    path = Path(out_dir) / MODEL_PT
    if not path.is_file():
        raise InputError(f"no extracted model {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise InputError(f"{path} is corrupt or not a weights-only file: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{path} is not an hwnas extracted model")
    model = build_torch(Arch.parse(blob["arch"]), int(blob["n_classes"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    return model.eval(), json.loads(blob["meta"])


def result_dict(r: ExtractResult) -> dict:
    d = asdict(r)
    d["out_dir"] = str(r.out_dir)
    return d
