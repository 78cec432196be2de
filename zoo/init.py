"""Weight initialisation schemes by name, applied to every Linear and Conv layer, biases zeroed.

* LeCun (LeCun et al., 1998, "Efficient BackProp"): Var(w) = 1 / fan_in.
* Xavier/Glorot (Glorot & Bengio, 2010, AISTATS): Var(w) = 2 / (fan_in + fan_out).
* He/Kaiming (He et al., 2015, "Delving Deep into Rectifiers", ICCV): Var(w) = 2 / fan_in.

Each comes as ``*_normal`` or ``*_uniform`` (uniform on [-a, a] with the same variance).
torch has the Xavier and He initialisers; LeCun is Kaiming with gain 1 (``nonlinearity='linear'``).
"""

from __future__ import annotations

import torch.nn as nn

_CONV_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d)


# One table from name to initialiser: INIT_SCHEMES is its keys, so a name cannot be accepted without one.
_INITIALISERS = {
    "lecun_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="linear"),
    "lecun_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="linear"),
    "xavier_normal": nn.init.xavier_normal_,
    "xavier_uniform": nn.init.xavier_uniform_,
    "he_normal": lambda w: nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu"),
    "he_uniform": lambda w: nn.init.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu"),
}

INIT_SCHEMES = tuple(_INITIALISERS)


def init_weights(module: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise every Linear/Conv weight of ``module`` with ``scheme`` and zero its bias."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {list(INIT_SCHEMES)}")
    for m in module.modules():
        if isinstance(m, _CONV_LINEAR):
            _INITIALISERS[scheme](m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
