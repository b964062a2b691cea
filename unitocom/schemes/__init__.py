"""Per-scheme payload <-> symbol processing. Each scheme module provides

    encode(stream_id, payload: SourcePayload, link: pb.LinkSettings, cfg: Config) -> Encoded
    decode(header: pb.StreamHeader, y, h_est, noise_var, erased, cfg: Config, est_error_var=0.0) -> pb.ModalityOutput

and `for_scheme` picks the module for a Scheme enum value.
"""
from __future__ import annotations

from unitocom.schemes.encoded import Encoded
from unitocom.v1 import unitocom_pb2 as pb

__all__ = ["Encoded", "for_scheme"]


def for_scheme(scheme: int):
    if scheme == pb.TRADITIONAL:
        from unitocom.schemes import traditional
        return traditional
    if scheme in (pb.UNITOCOM, pb.VAE):
        from unitocom.schemes import learned
        return learned
    raise ValueError(f"no implementation for scheme {pb.Scheme.Name(scheme) if scheme in pb.Scheme.values() else scheme}")
