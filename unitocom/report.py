"""A result (`client.result_to_dict`) as the lines `unitocom send` and `unitocom demo` print."""
from __future__ import annotations


def format_result(d: dict) -> str:
    """One summary line, a line per modality (decoded or not, CRC block failures, what came back), the answer,
    the quality figures, the stage timings and the files written."""
    lines = [f"{d['task']} via {d['scheme']} at {d['snr_db']:g} dB over {d['channel']}: "
             f"{d['channel_uses']} channel uses"]
    for o in d["outputs"]:
        if o["text"] is not None:
            what = repr(o["text"])
        elif o["image_png_bytes"] or o["audio_wav_bytes"]:
            what = f"{o['image_png_bytes']} B PNG" if o["image_png_bytes"] else f"{o['audio_wav_bytes']} B WAV"
        else:
            what = f"no {o['modality']}"
        status = "decoded" if o["decoded"] else "NOT decoded"
        blocks = f", {o['block_errors']}/{o['blocks']} blocks failed" if o["blocks"] else ""
        user = f"user {o['user']} " if d.get("users") else ""
        lines.append(f"  {user}{o['modality']:5s} {status}{blocks}: {what}" + (f"  ({o['note']})" if o["note"] else ""))
    if d["output"] and d["task"] != "reconstruct":
        lines.append(f"  output: {d['output']}")
    if d["quality"]:
        lines.append("  quality: " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(d["quality"].items()))
                     + (" (the users' mean)" if d.get("users") else ""))
    s = d.get("session")
    if s:
        state = "complete" if s["complete"] else f"PARTIAL, missing {', '.join(s['missing'])}"
        lines.append(f"  session {s['id']}: {state}; answered once, by {s['answered_by'] or '-'}; "
                     f"this call waited {s['waited_s']:.1f} s for the other parts")
        if s["note"]:
            lines.append(f"    note: {s['note']}")
        for p in s["arrived"]:
            lines.append(f"    part {p['modality']:5s} from {p['request_id']}: {p['scheme']} at {p['snr_db']:g} dB "
                         f"over {p['channel']}, {p['channel_uses']} channel uses, "
                         f"{'decoded' if p['decoded'] else 'NOT decoded'}" + (f" ({p['note']})" if p["note"] else ""))
    sic = any(u["sic_order"] for u in d.get("users", []))  # superposed: an order of cancellation
    for u in d.get("users", []):  # users sharing the channel (issue 17)
        place = f", {_ordinal(u['sic_order'] + 1)} in the SIC order" if sic else ""
        lines.append(f"  user {u['user']}: power {u['power']:.3g} P, SINR {u['sinr_db']:.1f} dB{place}, "
                     f"{u['channel_uses']} channel uses" + (f", output {u['output']!r}" if u["output"] else "")
                     + (": " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(u["quality"].items()))
                        if u["quality"] else ""))
    c = d.get("capture")
    if c:  # the channel's IQ recording of this request
        where = (f"recorded at the channel in {c['path']} ({c['bytes']} B; `unitocom replay {c['path']}`)"
                 if c["path"] else "NOT recorded")
        lines.append(f"  IQ capture: {where}" + (f" ({c['note']})" if c["note"] else ""))
    total = sum(d["timings_s"].values())
    lines.append(f"  time: {total * 1e3:.0f} ms in stages (" +
                 ", ".join(f"{k} {v * 1e3:.0f}" for k, v in d["timings_s"].items()) + ")")
    for f in d.get("files", []):
        lines.append(f"  wrote {f}")
    return "\n".join(lines)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
