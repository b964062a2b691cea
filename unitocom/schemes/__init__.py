"""Per-scheme payload <-> symbol processing. Each scheme module provides

    encode(stream_id, payload: SourcePayload, link: LinkSettings, cfg: Config, clock, task=None) -> Encoded
    decode(header: StreamHeader, y, h_est, noise_var, erased, cfg: Config, est_error_var=0.0) -> ModalityOutput

(the dataclasses of `unitocom.messages`), and `for_scheme` picks the module for a `unitocom.options.Scheme`.
"""
from __future__ import annotations

from unitocom.options import Scheme
from unitocom.schemes.encoded import Encoded

__all__ = ["Encoded", "for_scheme"]


def for_scheme(scheme: Scheme | None):
    if scheme == Scheme.TRADITIONAL:
        from unitocom.schemes import traditional
        return traditional
    if scheme in (Scheme.UNITOCOM, Scheme.VAE):
        from unitocom.schemes import learned
        return learned
    if scheme == Scheme.SEMCOM:
        from unitocom.schemes import semcom
        return semcom
    raise ValueError(f"no implementation for scheme {scheme.name if scheme else 'SCHEME_UNSPECIFIED'}")
