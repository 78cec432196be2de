"""Sequence-to-one regression (forecasting, the adding problem): ``RegressionTask`` plus optional
truncated backpropagation through time (Williams & Peng, 1990, "An efficient gradient-based
algorithm for on-line training of recurrent network trajectories", Neural Computation 2(4)).

Gradient clipping (Pascanu, Mikolov & Bengio, 2013, "On the difficulty of training recurrent
neural networks") is Lightning's: set ``trainer.gradient_clip_val`` in the config.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .regression import RegressionTask


class SequenceRegressionTask(RegressionTask):
    """Regression of ``num_classes`` targets (output width, usually 1) from raw ``(T, F)`` sequences.

    Everything but the training step is ``RegressionTask``'s: standardised targets from the
    DataModule's ``preprocessing["target"]`` (training rows only), ``r2``/``mae``/``mse`` in the data's
    units, raw-unit predictions from a loaded checkpoint.

    Args (besides ``RegressionTask``'s):
        tbptt_steps: ``None`` for full backpropagation through time; ``k`` splits every training
            sequence into chunks of ``k`` steps and back-propagates through the last chunk only,
            carrying the (detached) recurrent state across chunks. Needs a model with
            ``forward_sequence`` (``rnn``, ``lstm``, ``gru``).
    """

    def __init__(self, tbptt_steps: int | None = None, **kwargs: Any) -> None:
        if tbptt_steps is not None and tbptt_steps < 1:
            raise ValueError(f"model.tbptt_steps must be a positive number of time steps or null, got {tbptt_steps}")
        super().__init__(**kwargs)
        if tbptt_steps is not None and not hasattr(self.net, "forward_sequence"):
            raise ValueError(
                f"model.tbptt_steps needs a recurrent model (rnn, lstm, gru); {self.hparams.model!r} has no recurrent state"
            )
        self.tbptt_steps = tbptt_steps

    def _tbptt_output(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Truncated BPTT for a sequence-to-one target; returns the standardised prediction.

        Hand-written because Lightning 2.x removed ``Trainer(truncated_bptt_steps=...)`` and the
        ``hiddens`` argument of ``training_step``. The target sits after the last step, so only the
        last chunk has a loss: earlier chunks only advance the recurrent state, which is carried on
        detached (that cut is the truncation), and they run without a graph, which is where TBPTT
        saves memory. One optimizer step per batch keeps Lightning's automatic optimization, so
        ``trainer.gradient_clip_val`` still clips. With ``k >= T`` this is full BPTT.
        """
        z = self.preprocess(x)  # (N, T, F)
        chunks = list(torch.split(z, k, dim=1))  # each (N, <=k, F)
        state = None
        with torch.no_grad():
            for chunk in chunks[:-1]:
                _, state = self.net.forward_sequence(chunk, state)
        if state is not None:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        h, _ = self.net.forward_sequence(chunks[-1], state)  # (N, hidden)
        return self.net.forward_head(h)  # (N, num_classes)

    def _train_step(self, batch):
        if not self.tbptt_steps:
            return super()._train_step(batch)
        x, y = batch
        y = y.float().reshape(len(y), -1)  # (N, K)
        return F.mse_loss(self._tbptt_output(x, self.tbptt_steps), self.target.scale(y)), len(y), {}
