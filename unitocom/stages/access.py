"""Users sharing the channel (issue 17): what a request of K users must be, checked before anything is coded.

The hop-by-hop path (what each device sends, what the channel adds, how the base station separates the users) is
`stages.multiuser`; this module imports no scheme, so that request validation (`stages.request`) can use it.
`AccessError` carries the field, the reason and the status; `stages.request` answers it as a RequestError.
"""
from __future__ import annotations

import numpy as np

from unitocom.link import multiaccess as ma
from unitocom.messages import Label, LinkSettings, Request
from unitocom.options import Channel, Scheme


class AccessError(ValueError):
    """A multiple-access setting the services cannot serve: `field`, `reason`, `code` (a lower-case gRPC status)."""

    def __init__(self, field: str, reason: str, code: str = "invalid_argument"):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.code = field, reason, code


SUPERPOSED, ORTHOGONAL = "superposed", "orthogonal"


def active(link: LinkSettings) -> bool:
    """The request is one of users sharing the channel (K >= 2, or an access mode asked for one user)."""
    return link.users > 1 or bool(link.access)


def superposed(link: LinkSettings) -> bool:
    return link.access == SUPERPOSED


def user_count(link: LinkSettings) -> int:
    return max(1, int(link.users))


def powers(link: LinkSettings) -> np.ndarray:
    """Each user's transmit power as a share of P: the request's shares (superposed; the default split when it
    gives none), P for every orthogonal user (alone in its block)."""
    k = user_count(link)
    if link.access != SUPERPOSED:
        return np.ones(k)
    return ma.check_powers(link.user_powers, k) if link.user_powers else ma.default_powers(k)


def validate_link(link: LinkSettings) -> None:
    """RequestError naming the field for multiple-access settings the services cannot serve."""
    if not 0 <= link.users <= ma.MAX_USERS:
        raise AccessError("link.users", f"must be in 0..{ma.MAX_USERS} (0 or 1: one device), got {link.users}")
    if link.access not in ("", *ma.ACCESS):
        raise AccessError("link.access", f"unknown access {link.access!r}; expected orthogonal|superposed")
    k = user_count(link)
    if link.user_powers:
        if link.access != SUPERPOSED:
            raise AccessError("link.user_powers", "power shares are for superposed access; orthogonal users each "
                                                   "transmit alone in their block at the full power P")
        try:
            ma.check_powers(link.user_powers, k)
        except ValueError as e:
            text = str(e)
            if text.startswith("["):  # "[i] is ...": name the entry
                index, _, reason = text.partition("] ")
                raise AccessError(f"link.user_powers{index}]", reason) from None
            raise AccessError("link.user_powers", text) from None
    if link.access != SUPERPOSED:
        return
    # What superposed access does not model (yet): each would change what SIC subtracts or what it knows.
    why = {
        "channel": (link.channel == Channel.NOISELESS, "noiseless is the single-user upper bound; superposed "
                    "users interfere, and SIC whitens by the noise"),
        "csi": (link.csi is not None and link.csi.value == "estimated", "superposed access assumes perfect CSI at "
                "the base station (SIC with estimated gains leaves a residual this receiver does not model)"),
        "erasure_prob": (link.erasure_prob > 0, "frame erasures are not modelled with superposed access"),
        "packet_loss": (link.packet_loss > 0, "packet losses are not modelled with superposed access"),
        "token_budget": (link.token_budget > 0, "token budgets are not modelled with superposed access"),
        "packing": (link.packing == "aggregated", "aggregated packing is not modelled with superposed access"),
        "variant": (link.variant == "resilient", "the resilient variant is not modelled with superposed access"),
    }
    for name, (bad, reason) in why.items():
        if bad:
            raise AccessError(f"link.{name}", reason)
    if link.scheme == Scheme.SEMCOM:
        raise AccessError("link.access", "superposed access is built for the traditional and the learned token "
                                          "schemes (SIC re-modulates what was decoded); semcom has no re-modulation",
                           code="unimplemented")


def users_mean(qualities: list[dict[str, float]], skip: tuple[str, ...] = ()) -> dict[str, float]:
    """A request's score from its users' (each user's quality dict): the mean of each score over the users that
    have it; `skip` names counts that are not scores."""
    keys = sorted({key for q in qualities for key in q if key not in skip})
    return {key: float(np.mean([q[key] for q in qualities if key in q])) for key in keys}


def labelled(label: Label) -> bool:
    return bool(label.answer or label.transcript or label.caption)


def check_labels(link: LinkSettings, label: Label, user_labels: list[Label], prefix: str = "") -> None:
    """What each user's answer is scored against: `user_labels`, one per user, for users sharing the channel; the
    request's `label` for one device. A label the base station could not give to one user is refused, not dropped."""
    k = user_count(link)
    if user_labels and not active(link):
        raise AccessError(f"{prefix}user_labels", "labels per user are for users sharing the channel (link.users "
                                                 ">= 2, or link.access); one device's request is scored against label")
    if user_labels and len(user_labels) != k:
        raise AccessError(f"{prefix}user_labels", f"{len(user_labels)} labels for {k} users: give one per user, in "
                                                 "user order (an empty Label leaves that user's answer unscored)")
    if labelled(label) and active(link) and (k > 1 or user_labels):
        raise AccessError(f"{prefix}label", f"a request of {k} users sharing the channel is scored per user: give "
                                           "user_labels (one per user), not label" if k > 1 else
                                           "give label or user_labels, not both")


def validate(req: Request) -> None:
    """The payloads' users: each a user of the request, and every user with at least one payload; the labels."""
    link = req.link
    k = user_count(link)
    check_labels(link, req.label, req.user_labels)
    for i, p in enumerate(req.payloads):
        if p.user >= k:
            raise AccessError(f"payloads[{i}].user", f"{p.user} is not a user of this request (link.users = "
                                                      f"{link.users}: users 0..{k - 1})")
    if not active(link):
        return
    have = {p.user for p in req.payloads}
    missing = [u for u in range(k) if u not in have]
    if missing:
        raise AccessError("payloads", f"user {missing[0]} has no payload: each of the {k} users sends at least one")
