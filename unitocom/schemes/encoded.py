"""What a scheme's encoder hands the transmitter (its own module, so that the scheme modules and the package's
dispatcher `for_scheme` do not import each other)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitocom.messages import StreamHeader


@dataclass
class Encoded:
    header: StreamHeader
    symbols: np.ndarray  # complex64 [N], mean power P
    reference: object  # what the output is scored against (the input, after any resizing the scheme did)
    source: object = None  # what the source decoder gives on a clean channel (e.g. the JPEG), if it has one
