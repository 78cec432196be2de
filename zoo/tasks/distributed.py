"""What the zoo needs to be correct under DDP (several processes, one or several machines).

``run_dir(trainer)``: the run's output folder, read WITHOUT a collective. ``Trainer.log_dir`` is a
broadcast from rank 0, so every rank must call it; code that only rank 0 runs (writing files) and
reads it blocks or crashes (``gloo ... Connection closed by peer``) once the other ranks have left.
The files are written by rank 0 only, and rank 0's own logger already knows the folder, so no
broadcast is needed there.

``PredictionWriter``: ``zoo predict`` under DDP runs each rank on its own shard; the writer gathers
every rank's predictions with their dataset indices and rank 0 writes them once, in input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DistributedSampler


def run_dir(trainer) -> Path:
    """``trainer.log_dir`` without its broadcast: the same rule (TensorBoard/CSV loggers: their
    ``log_dir``; other loggers: ``save_dir``; no logger: ``default_root_dir``). Correct on rank 0,
    which is the rank that writes files; other ranks' loggers may not have resolved a version."""
    loggers = trainer.loggers
    if loggers:
        lg = loggers[0]
        path = lg.log_dir if isinstance(lg, (TensorBoardLogger, CSVLogger)) else lg.save_dir
        if path:
            return Path(path)
    return Path(trainer.default_root_dir)


def eval_sampler(dataset) -> DistributedSampler | None:
    """The sampler of a validation/test/predict loader: under DDP, Lightning's
    ``UnrepeatedDistributedSampler`` (each row on exactly one rank); otherwise ``None``.

    Why: Lightning would wrap an evaluation loader in a plain ``DistributedSampler``, which pads the
    shards to equal length by repeating rows, so a test set of odd size counts a row twice (measured:
    test/r2 of linear_regression_diabetes moved by 0.015 between one and two processes). Lightning
    keeps a sampler that is already a ``DistributedSampler``. Shards may then differ by one batch,
    which is safe because evaluation only synchronises at epoch end (torchmetrics states and
    epoch-level ``self.log``); an ``on_step`` ``sync_dist`` in validation would not be.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, shuffle=False)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _concat(parts: Sequence[Any]) -> Any:
    """Batch outputs (tensors, or dicts of tensors) -> one output along the sample dimension."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: _concat([p[k] for p in parts]) for k in first}
    return torch.cat([torch.as_tensor(p) for p in parts])


def _take(out: Any, order: torch.Tensor) -> Any:
    if isinstance(out, dict):
        return {k: _take(v, order) for k, v in out.items()}
    return out[order]


class PredictionWriter(BasePredictionWriter):
    """Writes ``trainer.predict``'s outputs once, in input order, to ``<log dir>/predictions.pt``.

    The file is ``torch.save`` of ``{"index": (N,) dataset positions 0..N-1, **outputs}`` where each
    output is the task's ``predict_step`` result concatenated over batches (for classification
    ``probs`` (N, C) and ``preds`` (N,); for regression ``preds`` (N, K)), so row ``i`` belongs to
    sample ``i`` of the predict loader's dataset. It loads with ``torch.load(path, weights_only=True)``.

    Why a writer: Lightning shards predict data over ranks (``UnrepeatedDistributedSampler``, no
    duplicates) and returns only the local shard on each rank; ``batch_indices`` say which dataset
    rows each rank saw, so gathering them restores the input order.

    Args:
        output: file to write; ``None`` for ``predictions.pt`` in the run's log directory.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.last_path: Path | None = None

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        # batch_indices is one list per dataloader; predictions is flattened for a single one.
        # With several dataloaders only the first is written.
        batch_indices = batch_indices[0] if batch_indices else []
        if predictions and isinstance(predictions[0], list):
            predictions = predictions[0]
        local_index = [int(i) for batch in batch_indices for i in batch]
        local = _concat([_to_cpu(p) for p in predictions]) if predictions else None
        shards = [(local_index, local)]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            shards = [None] * trainer.world_size
            dist.all_gather_object(shards, (local_index, local))  # every rank calls it: a collective
        if not trainer.is_global_zero:
            return
        shards = [s for s in shards if s[1] is not None]
        if not shards:
            return
        index = torch.tensor([i for s in shards for i in s[0]], dtype=torch.long)
        out = _concat([s[1] for s in shards])
        order = torch.argsort(index)
        # A loader without sample indices (an IterableDataset) cannot be put back in order: say so, not guess.
        if len(index) != len(_first_tensor(out)):
            raise RuntimeError(
                "PredictionWriter: the predict loader reported no sample indices (an IterableDataset?); "
                "predictions cannot be put back in input order"
            )
        result = {"index": index[order], **({"preds": out[order]} if isinstance(out, torch.Tensor) else _take(out, order))}
        path = Path(self.output) if self.output else run_dir(trainer) / "predictions.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result, path)
        self.last_path = path
        print(f"Wrote {len(index)} predictions in input order to {path}")


def _first_tensor(out: Any) -> torch.Tensor:
    return next(iter(out.values())) if isinstance(out, dict) else out
