"""Checkpoint safety: nothing in a checkpoint ever runs, and a checkpoint on disk is never half-written.

``AtomicCheckpointIO`` is the ``CheckpointIO`` plugin every zoo task installs (``ZooTask.setup``)
when the trainer uses Lightning's default one:

* **Loading** (``--ckpt_path``, ``trainer.fit/test(ckpt_path=...)``) always unpickles with
  ``weights_only=True``. Lightning's own loader (``lightning.fabric.utilities.cloud_io._load``)
  switches to ``weights_only=False`` for ``http(s)://`` paths, which runs any pickle payload a
  remote file carries; here a URL is first downloaded to a cache (``cached_download``) and read
  like a local file. ``weights_only=False`` is refused.
* **Saving** writes a temporary file *in the destination directory*, fsyncs it and renames it over
  the target (``os.replace`` is atomic within one filesystem), so a kill at any moment leaves the
  old file or the new one. Lightning's ``_atomic_save`` goes through an fsspec transaction whose
  temporary file lives in ``TMPDIR``; when that is another filesystem (a RAM-backed ``/dev/shm``)
  the final move is a copy, and a kill during it truncates the checkpoint.
* ``remove_stale_temp_files`` deletes the temporary files a killed run left behind; tasks call it
  at the next start for every checkpoint directory.
* **Write-behind** for ``ZooModelCheckpoint``'s saves: the checkpoint is snapshotted (tensors
  cloned) on the training thread and written, fsynced and renamed by one background thread, so the
  next epoch trains while the disk works. Every other save (``trainer.save_checkpoint``, the
  preemption save) stays synchronous, and every load, synchronous save and ``teardown`` first waits
  for the writes in flight, so no reader ever sees a checkpoint that is not there yet.

``ZooModelCheckpoint`` is the ``checkpoint.*`` callback of ``zoo fit``: Lightning's
``ModelCheckpoint`` whose ``last.ckpt`` is the latest state at every save point again, a hard link
(no second write) when a best-k checkpoint was written at the same step.

``ZooTask.load_from_checkpoint`` goes through ``safe_load_path`` too (URL -> cache, ``weights_only``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from concurrent.futures import Future, ThreadPoolExecutor

from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning_utilities.core.apply_func import apply_to_collection
from lightning.pytorch.plugins.io import TorchCheckpointIO

TEMP_SUFFIX = ".zoo-tmp"
_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp creates files 0600, checkpoints get the usual 0666 & ~umask


def cache_dir() -> Path:
    """Where downloaded checkpoints are kept: ``$ZOO_CACHE_DIR`` or ``~/.cache/lightning-zoo/checkpoints``."""
    env = os.environ.get("ZOO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "lightning-zoo" / "checkpoints"


def is_url(path: Any) -> bool:
    return isinstance(path, (str, Path)) and str(path).split("://", 1)[0].lower() in ("http", "https")


def cached_download(url: str) -> Path:
    """Download ``url`` once into ``cache_dir()`` (name: hash of the URL + its file name) and return the path.

    ``torch.hub.download_url_to_file`` writes a temporary file next to the target and renames it, so
    an interrupted download never leaves a partial file under the final name.
    """
    name = Path(urllib.parse.urlparse(url).path).name or "checkpoint.ckpt"
    dst = cache_dir() / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}"
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dst), progress=False)
    return dst


def _check_weights_only(weights_only: Optional[bool]) -> None:
    if weights_only is False:
        raise ValueError(
            "weights_only=False: the zoo never unpickles arbitrary objects from a checkpoint (a pickle can run code); "
            "leave weights_only unset, zoo checkpoints hold only tensors and plain values"
        )


def safe_load_path(path: Any, weights_only: Optional[bool] = None) -> Any:
    """The local path to read for ``path`` (a URL is downloaded to the cache); refuses ``weights_only=False``."""
    _check_weights_only(weights_only)
    return cached_download(str(path)) if is_url(path) else path


def _owner_tag() -> str:
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


_TEMP_RE = re.compile(r"\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def _writer_gone(p: Path) -> bool:
    """True when the process that wrote temp file ``p`` no longer runs (same host: its pid is gone;
    another host sharing the filesystem: untouched for 10 minutes)."""
    m = _TEMP_RE.search(p.name)
    if m is None:
        return False
    if m["host"] != socket.gethostname().replace(".", "_"):
        return time.time() - p.stat().st_mtime > 600
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False  # the writer still runs


def remove_stale_temp_files(directory: Any) -> list[Path]:
    """Delete the temporary checkpoint files a killed save left in ``directory``.

    Only names this module creates (``.<target>.<host>-<pid>.<random>.zoo-tmp``) whose writer is
    gone are touched, so a run still saving into the same directory keeps its temp file.
    Tasks call it at the next start (``setup``) and when a checkpoint of that directory is loaded.
    """
    d = Path(directory)
    removed = []
    if d.is_dir():
        for p in d.glob(f".*{TEMP_SUFFIX}"):
            try:
                if _writer_gone(p):
                    p.unlink()
                    removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def atomic_torch_save(obj: Any, path: Any) -> None:
    """``torch.save`` to a temp file in ``path``'s directory, fsync, rename over ``path``, fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner_tag()}.", suffix=TEMP_SUFFIX, dir=path.parent)

    def write() -> None:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    _publish(Path(tmp), path, write)


def _publish(tmp: Path, dst: Path, make: Callable[[], None]) -> None:
    """Run ``make`` (it fills ``tmp``), rename ``tmp`` over ``dst`` and fsync the directory. On any
    exception, KeyboardInterrupt included, ``tmp`` is removed and ``dst`` stays as it was."""
    try:
        make()
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(dst.parent)


def _fsync_dir(directory: Path) -> None:
    # A rename lives in the directory entry: fsync it too, or a power cut can undo it.
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_link(src: Any, dst: Any) -> None:
    """Make ``dst`` name the same file as ``src`` (a hard link), atomically: link to a temp name in
    ``dst``'s directory, rename it over ``dst``. Checkpoints are never modified in place (every save
    writes a new file and renames it), so two names sharing one inode never see a change they did
    not make, and removing ``src`` later leaves ``dst`` whole. Where the filesystem has no hard
    links, the bytes are copied (and fsynced) instead."""
    src, dst = Path(src), Path(dst)
    tmp = dst.parent / f".{dst.name}.{_owner_tag()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"

    def link() -> None:
        try:
            os.link(src, tmp)
        except OSError:
            import shutil

            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())

    _publish(tmp, dst, link)


def _is_local(path: Any) -> bool:
    return type(get_filesystem(path)).__name__ == "LocalFileSystem"


def _snapshot(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone()  # the weights and optimizer moments change in place at the next step


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with atomic local saves, ``weights_only=True`` loads and
    write-behind for the saves made inside ``write_behind()`` (see the module doc).

    Why not Lightning's ``AsyncCheckpointIO``: it makes *every* save asynchronous, including a
    user's ``trainer.save_checkpoint(path)`` that is read right after, and it deletes and links
    files synchronously while the write it queued earlier may still be running (a best checkpoint
    removed before it is written comes back as a stale file). Here only the callback's saves are
    queued, and removals and links made while writes are queued go through the same single-thread
    queue, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self._executor: Optional[ThreadPoolExecutor] = None
        self._pending: list[Future] = []
        self._behind = False

    @contextlib.contextmanager
    def write_behind(self):
        """Saves made inside this block are queued (snapshot now, write in the background)."""
        self._behind = True
        try:
            yield
        finally:
            self._behind = False

    def _submit(self, fn: Callable, *args: Any) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-checkpoint-writer")
        self._pending.append(self._executor.submit(fn, *args))
        # A write that already failed (disk full, permissions) stops the run now, not at its end.
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()

    def wait(self) -> None:
        """Block until every queued write, link and removal is on disk; re-raise the first error."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending]
        for e in errors:
            if e is not None:
                raise e

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or not _is_local(path):
            # Object stores have their own atomic put; the parent handles them (and rejects storage_options).
            self.wait()
            return super().save_checkpoint(checkpoint, path, storage_options)
        if self._behind:
            # apply_to_collection rebuilds every dict/list, so later changes to the live state (the
            # callbacks' dicts, the loops' counters) cannot reach the queued copy either.
            self._submit(atomic_torch_save, apply_to_collection(checkpoint, torch.Tensor, _snapshot), path)
        else:
            self.wait()
            atomic_torch_save(checkpoint, path)

    def link_checkpoint(self, src: Any, dst: Any) -> None:
        """``dst`` becomes another name of checkpoint ``src`` (``atomic_link``), after queued writes."""
        if self._pending:
            self._submit(atomic_link, src, dst)
        else:
            atomic_link(src, dst)

    def remove_checkpoint(self, path: Any) -> None:
        if self._pending:
            self._submit(super().remove_checkpoint, path)  # after the queued writes, never before
        else:
            super().remove_checkpoint(path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Optional[Callable] = lambda storage, loc: storage,
        weights_only: Optional[bool] = None,
    ) -> dict[str, Any]:
        self.wait()
        local = safe_load_path(path, weights_only)
        if not is_url(path) and _is_local(local):
            remove_stale_temp_files(Path(local).parent)  # resuming a killed run: its leftovers go
        return super().load_checkpoint(local, map_location=map_location, weights_only=True)

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


class ZooModelCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (every argument the same) with ``save_last=True`` meaning what
    it meant before Lightning 2.6, and cheaper saves.

    * ``last.ckpt`` is the state at every save point. Lightning 2.6 writes it only when a best-k
      checkpoint is written at the same step, so with ``save_top_k=1`` it is a copy of the best
      one, and ``--ckpt_path last`` after a crash resumes from the best epoch, losing every epoch
      since (reported in openclimatefix/pvnet#544).
    * When a best-k checkpoint was written at the same step, ``last.ckpt`` becomes a hard link to it
      (``atomic_link``): the same bytes, not a second serialisation and write.
    * Its saves are written behind the training (``AtomicCheckpointIO.write_behind``).

    ``save_last="link"`` keeps Lightning's own behaviour (a symbolic link to the last saved file).
    """

    @property
    def state_key(self) -> str:
        # Lightning keys a callback's state in the checkpoint by its class name; keep ModelCheckpoint's,
        # so checkpoints of runs before this class (and runs resumed without it) restore its state.
        key = super().state_key
        return "ModelCheckpoint" + key[len(type(self).__qualname__) :] if key.startswith(type(self).__qualname__) else key

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        io = trainer.strategy.checkpoint_io
        with io.write_behind() if isinstance(io, AtomicCheckpointIO) else contextlib.nullcontext():
            super()._save_checkpoint(trainer, filepath)

    def _last_filepath(self, trainer: Any, monitor_candidates: dict[str, Any]) -> str:
        # Lightning's naming of the last checkpoint (ModelCheckpoint._save_last_checkpoint, 2.6).
        filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        if self._enable_version_counter:
            version_cnt = self.STARTING_VERSION
            while self.file_exists(filepath, trainer) and filepath != self.last_model_path:
                filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST, ver=version_cnt)
                version_cnt += 1
        return filepath

    def _save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
        if self.save_last is True:
            # The best-k file may become last.ckpt too (a link to the same bytes), so the state it
            # stores already names last.ckpt, as a separately written last.ckpt would.
            self._zoo_previous_last = self.last_model_path
            self.last_model_path = self._last_filepath(trainer, monitor_candidates)
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_last_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
        if self.save_last is not True:
            return super()._save_last_checkpoint(trainer, monitor_candidates)
        previous = self.__dict__.pop("_zoo_previous_last", self.last_model_path)
        filepath = self.last_model_path = self._last_filepath(trainer, monitor_candidates)
        src, io = self._last_checkpoint_saved, trainer.strategy.checkpoint_io
        if (
            src
            and src != filepath
            and self._last_global_step_saved == trainer.global_step
            and isinstance(io, AtomicCheckpointIO)
            and _is_local(filepath)
        ):
            if trainer.is_global_zero:
                io.link_checkpoint(src, filepath)
            self._last_checkpoint_saved = filepath
        else:
            self._save_checkpoint(trainer, filepath)
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _save_latest(self, trainer: Any) -> None:
        # Lightning 2.6 skips last.ckpt when no best-k checkpoint was written at this step.
        if self.save_last is True and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_latest(trainer)


def install(trainer: Any) -> None:
    """Put ``AtomicCheckpointIO`` in place of Lightning's default ``TorchCheckpointIO`` (a user's own plugin stays),
    and remove the temp files a killed run left in the checkpoint directories."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
    if trainer.is_global_zero:
        for cb in trainer.checkpoint_callbacks:
            dirpath = getattr(cb, "dirpath", None)
            if dirpath and _is_local(dirpath):
                remove_stale_temp_files(dirpath)


# ------------------------------------------------------------------------------ RNG states
# What decides the next epoch besides the weights and optimizer: the shuffle order (the DataLoader's
# RandomSampler seeds itself from the global torch RNG when the epoch's iterator is made), dropout
# and augmentations (global torch/numpy/python RNGs). Saved with every checkpoint and restored when
# fitting resumes, so a run resumed at an epoch boundary draws what the uninterrupted run drew.
# Written here rather than with lightning.fabric.utilities.seed._collect_rng_states, a private name.
# Stored as tensors and plain values so the checkpoint stays loadable with weights_only=True.

RNG_KEY = "zoo_rng_states"


def collect_rng_states() -> dict[str, Any]:
    import random

    import numpy as np

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ------------------------------------------------------------------------------ preemption


class PreemptionCheckpoint(Checkpoint):
    """On SIGTERM or SIGUSR1 during ``fit`` (a scheduler preempting the job), save a checkpoint at the
    current step, say where on stderr, and exit with ``128 + signal`` (143 for SIGTERM).

    Why not Lightning alone: on SIGTERM it finishes the running training epoch and then raises
    ``SIGTERMException``, a ``SystemExit`` with code 0, without saving, so the epoch is lost and a
    script cannot tell preemption from a finished run; SIGUSR1 it handles only under SLURM
    auto-requeue. This callback stops after the current batch instead, or, when the signal comes
    from the epoch's last batch on, once the epoch has ended (below). The checkpoint is
    ``<checkpoint dir>/last.ckpt`` (written atomically), so ``--ckpt_path last`` continues from it.
    Every zoo task adds it for ``fit`` (``ZooTask.configure_callbacks``).

    A ``Checkpoint`` subclass only so that Lightning runs its epoch-end hook after ModelCheckpoint's
    and EarlyStopping's (``_reorder_callbacks`` puts checkpoints last; ``on_train_epoch_end`` calls
    the "monitoring callbacks", EarlyStopping and Checkpoint, after the others): a stop there keeps
    the epoch's best checkpoint and early-stopping count.

    Under DDP every rank stops at the same step, whichever ranks saw the signal (a scheduler's
    signals reach the ranks at slightly different times, or only one rank when a user signals one
    process): the ranks all-reduce "was I signalled" on the logging steps (every
    ``log_every_n_steps`` optimizer steps, where the step already reads the device) and at each
    epoch's end. A rank that saved and exited alone would leave the others waiting in their next
    collective (NCCL: for ever). Lightning's own SIGTERM handler is not called under DDP: it
    broadcasts from inside the signal handler and raises where only the local rank knows. Its SIGUSR1
    handler (SLURM auto-requeue) still runs.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saved_to: Path | None = None
        self._previous: dict[int, Any] = {}
        self._hold = False  # from the epoch's last training batch to its end: stop at the epoch's end
        self._validating = False  # inside fit's validation: never stop there
        self._unchained: tuple[int, Any] | None = None  # a signal not yet passed on to Lightning's handler
        self._ranks = 1  # processes that must stop together

    def on_train_start(self, trainer, pl_module) -> None:
        # Registered after Lightning's own handlers (Trainer._run installs them before this hook),
        # and chained to them (see _handler for when), so SLURM's requeue and a user's own handler still run.
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self.signum, self.saved_to, self._unchained = None, None, None
        self._hold = self._validating = False
        self._ranks = trainer.world_size
        for name in self.SIGNALS:
            if hasattr(signal, name):
                sig = getattr(signal, name)
                self._previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        import signal

        self.signum = signum
        if self._ranks > 1 and signum == signal.SIGTERM:
            return  # under DDP Lightning's SIGTERM handler is never called (class docstring)
        if self._hold or self._validating:
            # Lightning's SIGTERM handler would make its evaluation loop raise after the current
            # validation batch, and a checkpoint from there resumes with that validation cut short
            # (its metrics gone: EarlyStopping fails on the missing monitor). Passed on at the stop.
            self._unchained = (signum, frame)
            return
        self._chain(signum, frame)

    def _chain(self, signum, frame) -> None:
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)

    def _restore_handlers(self) -> None:
        import signal

        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handler:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def _save(self, trainer) -> Path:
        cb = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        directory = Path(cb.dirpath) if cb is not None and cb.dirpath else Path(trainer.default_root_dir)
        path = directory / "last.ckpt"
        trainer.save_checkpoint(path)
        self.saved_to = path
        if trainer.is_global_zero:
            import signal
            import sys

            name = signal.Signals(self.signum).name if self.signum else "SIGTERM"
            print(
                f"{name} received: checkpoint of step {trainer.global_step} (epoch {trainer.current_epoch}) saved to {path}; "
                "continue with --ckpt_path last",
                file=sys.stderr,
                flush=True,
            )
        return path

    def _agreed_signal(self, trainer) -> int | None:
        """The signal to stop for: this process's, or under DDP the largest any rank saw (every rank
        calls this at the same step: one scalar all-reduce and its host read)."""
        if self._ranks <= 1:
            return self.signum
        seen = torch.tensor(float(self.signum or 0), device=trainer.strategy.root_device)
        agreed = int(trainer.strategy.reduce(seen, reduce_op="max"))
        return agreed or None

    def _stop_if_signalled(self, trainer) -> None:
        if self.saved_to is not None:
            return
        self.signum = self._agreed_signal(trainer)
        if self.signum is not None:
            self._save(trainer)
            if self._unchained is not None:
                self._chain(*self._unchained)
            self._restore_handlers()
            raise SystemExit(128 + int(self.signum))

    # Where a stop may happen decides what `--ckpt_path last` resumes (Lightning's loop restart
    # stages, loops/fit_loop.py): after a training batch that is not the epoch's last, training
    # continues from the next batch; from the last batch on, validation and the epoch's end hooks
    # (EarlyStopping, ModelCheckpoint, the epoch's LR step) must run first, or the resumed run skips
    # them. So a signal from the last batch on stops in on_train_epoch_end, after validation, and
    # the resumed run is bit-identical to one never stopped (tests/test_preemption.py).

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # A signal between two batches was passed on to Lightning, whose evaluation loop would stop
        # mid-validation if this batch is the epoch's last: stop before the batch instead (Lightning
        # resumes at it). Under DDP it was not passed on, and the ranks decide at the batch's end.
        if self._ranks <= 1:
            self._stop_if_signalled(trainer)
        self._hold = batch_idx + 1 >= trainer.num_training_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._hold:
            return
        if self._ranks <= 1 or trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self._stop_if_signalled(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validating = trainer.state.fn == "fit" and not trainer.sanity_checking

    def on_validation_end(self, trainer, pl_module) -> None:
        self._validating = False

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._hold = False
        self._stop_if_signalled(trainer)

    def on_exception(self, trainer, pl_module, exception) -> None:
        # Lightning stopped first (its SIGTERMException at an epoch or validation boundary): save here.
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        # Under DDP only Lightning's exception is raised on every rank at once; a save is collective.
        local = self.signum is not None and self._ranks <= 1
        if self.saved_to is None and (local or isinstance(exception, SIGTERMException)):
            self._save(trainer)
        self._restore_handlers()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_handlers()
