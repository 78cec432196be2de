"""Recurrent sequence models: Elman RNN, LSTM and GRU over ``(T, F)`` input.

* Elman (1990), "Finding Structure in Time", Cognitive Science 14(2): the simple recurrent network
  ``h_t = tanh(W x_t + U h_{t-1} + b)``.
* Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", Neural Computation 9(8), with the
  forget gate of Gers, Schmidhuber & Cummins (2000) as in ``torch.nn.LSTM``.
* Cho et al. (2014), "Learning Phrase Representations using RNN Encoder-Decoder for Statistical
  Machine Translation", EMNLP: the gated recurrent unit.

The recurrences are torch's ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (fused, well tested); this file
only adds the zoo surface. Sequence-to-one: the last layer's hidden state after the last step is the
embedding (``num_features = hidden_size``) and an affine head maps it to ``num_classes`` outputs,
class logits for classification or ``num_classes`` regression targets (the sequence-to-one
regression head of a forecasting task is the same affine layer with ``num_classes=1``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ._base import ZooModel, make_head
from ._registry import register_model

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}

# ----------------------------------------------------------------------------------------- model


class SequenceModel(ZooModel):
    """Recurrent network reading ``(N, T, F)`` batches (batch first), any length T.

    Args:
        input_shape: ``(T, F)``; only F is fixed, T may vary.
        num_classes: outputs of the affine head; 0 returns the last hidden state.
        cell: ``"rnn"`` (Elman), ``"lstm"`` or ``"gru"``.
        hidden_size: units per layer.
        num_layers: stacked recurrent layers.
        dropout: dropout between stacked layers (torch applies it to all but the last layer).
        nonlinearity: ``"tanh"`` (Elman) or ``"relu"``, for ``cell="rnn"`` only.
    """

    strict_dims = (1,)

    def __init__(
        self,
        input_shape: Sequence[int] = (8, 8),
        num_classes: int = 10,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 2:
            raise ValueError(f"SequenceModel needs input_shape=(T, F), got {self.input_shape}")
        if cell not in CELLS:
            raise ValueError(f"SequenceModel: unknown cell {cell!r}; choose one of {sorted(CELLS)}")
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"SequenceModel: hidden_size and num_layers must be positive, got {hidden_size} and {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SequenceModel: dropout must be in [0, 1), got {dropout}")
        kwargs = {}
        if cell == "rnn":
            if nonlinearity not in ("tanh", "relu"):
                raise ValueError(f"SequenceModel: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
            kwargs["nonlinearity"] = nonlinearity
        self.cell = cell
        self.rnn = CELLS[cell](
            self.input_shape[1], hidden_size, num_layers=num_layers, batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0, **kwargs,
        )
        self.num_features = hidden_size
        self.head = make_head(hidden_size, num_classes)

    def forward_sequence(self, x: torch.Tensor, state=None):
        """Run the recurrence from ``state`` (``None``: zeros); return the last hidden state of the
        last layer ``(N, hidden_size)`` and the final state, so truncated BPTT can carry it on."""
        out, state = self.rnn(x, state)  # out: (N, T, hidden_size)
        return out[:, -1], state

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x)[0]  # (N, hidden_size)


# ------------------------------------------------------------------------------------- variants

_ELMAN = "Elman (1990), Finding Structure in Time, Cognitive Science 14(2)"
_LSTM = "Hochreiter & Schmidhuber (1997), Long Short-Term Memory, Neural Computation 9(8)"
_GRU = "Cho et al. (2014), Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine Translation, EMNLP"
_IN = (8, 8)  # a digit read row by row: 8 steps of 8 features


@register_model(task="classification", input_shape=_IN, paper=_ELMAN, default_config="configs/rnn_sequential_digits.yaml")
def rnn(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> SequenceModel:
    """Elman simple recurrent network (tanh)."""
    return SequenceModel(input_shape, num_classes, cell="rnn", **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_LSTM, default_config="configs/lstm_sequential_digits.yaml")
def lstm(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> SequenceModel:
    """Long short-term memory."""
    return SequenceModel(input_shape, num_classes, cell="lstm", **kwargs)


@register_model(task="classification", input_shape=_IN, paper=_GRU, default_config="configs/gru_sequential_digits.yaml")
def gru(input_shape: Sequence[int] = _IN, num_classes: int = 10, **kwargs) -> SequenceModel:
    """Gated recurrent unit."""
    return SequenceModel(input_shape, num_classes, cell="gru", **kwargs)
