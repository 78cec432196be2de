"""Dependency noise the `zoo` command keeps off the user's console, each filter with its reason.

A plain `zoo fit` prints the progress bar, the model summary and the results; tips advertising a
service and deprecation notices about code the user did not write are not the user's business. Each
filter matches one message (and its category or logger), so anything else still gets through. These
are installed by `cli.main` only, so a Python user's own warning and logging settings stay theirs.
"""

from __future__ import annotations

import logging
import warnings


class _DropTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" lines: advertisements
    for a cloud service, printed by every Trainer (lightning/pytorch/trainer/connectors/
    logger_connector.py and callback_connector.py, through rank_zero_info)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


_TIP_FILTER = _DropTips()


def quiet_dependency_noise() -> None:
    # rank_zero_info logs through this module's logger; the filter sits on it alone.
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _TIP_FILTER not in logger.filters:
        logger.addFilter(_TIP_FILTER)
    # torch >= 2.10 deprecates `LeafSpec`, which Lightning's own pytree helper still builds
    # (lightning/pytorch/utilities/_pytree.py) on every fit: nothing the user can change.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    # jsonargparse >= 4.49 deprecates `skip_none`, which LightningCLI itself passes when it saves and
    # prints config.yaml (lightning/pytorch/cli.py), and prefaces its first deprecation with a note.
    warnings.filterwarnings("ignore", message=r"\s*skip_none parameter was deprecated")
    warnings.filterwarnings("ignore", message=r"\s*By default only one JsonargparseDeprecationWarning")
