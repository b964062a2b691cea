"""A data set as the MLLM reads it: every split's tokenizer means, questions, captions and transcripts, in one folder.

`TaskData` computes token means from pictures and speech once per run (about a minute per objective on two cores
for `data/tiny-speech96`), and it needs the data set's files (tens of thousands of clips) and their decoders. A token
cache holds what that pass produces, for each tokenizer objective asked for, so that an MLLM trains where the data
set and its tools are not, a GPU machine reached with a size limit say:

    unitocom train token-cache --data data/tiny-speech96 --out cache/tiny-speech96     # here, once
    unitocom train mllm --data cache/tiny-speech96 ...                                 # there

Training reads it in place of the data set and records the same data checksum (the data set's, taken when the
cache was made). The cache also keeps copies of the tokenizers and BPE it was made with (`links/`): a run reads
the received tokens through those very links (the channel pass of each batch), and a run whose links differ from
them is refused rather than trained on means of another tokenizer.

Layout: token-cache.json (what it was made from), links/, and per objective and split <objective>-<split>.json.gz
(the text) and <objective>-<split>.safetensors (the means: float32, or int8 with a scale per token to fit a
transfer limit; `save_split`).
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import torch

from unitocom.mllm import sequences as seq
from unitocom.mllm.data import CaptionData, Standardizer, TaskData
from unitocom.train.provenance import file_sha256

FORMAT = "unitocom-token-cache/1"
META = "token-cache.json"
SPLITS = ("train", "val")
VALUES = ("float32", "int8")


def is_cache(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def read_meta(path: str | Path) -> dict:
    meta = json.loads((Path(path) / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: a token cache of format {meta.get('format')!r}; this version reads {FORMAT!r}")
    return meta


def _ragged(items: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[L_i, d] tensors -> (their rows stacked [sum L_i, d], lengths [n])."""
    rows = torch.cat(items) if items else torch.zeros(0, dim)
    return rows.contiguous(), torch.tensor([len(t) for t in items], dtype=torch.int64)


def _unragged(rows: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.split(rows, lengths.tolist())) if len(lengths) else []


def quantize(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """float [..., d] -> int8 values with one float16 scale per row of d (absmax / 127): 1.125 bytes a value at
    d = 16, and a quantization noise about 40 dB under the means (`sqnr_db`), far under the channel noise of the
    highest training SNR (25 dB)."""
    scale = (x.abs().amax(-1, keepdim=True) / 127.0).clamp_min(1e-8).half()
    return {"q": torch.round(x / scale.float()).clamp(-127, 127).to(torch.int8), "scale": scale}


def dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()


def sqnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """10 log10(mean x^2 / mean (x - y)^2) in dB: how far under the signal x the error of its copy y lies."""
    err = float(((x - y) ** 2).mean())
    return float("inf") if err == 0 else 10 * torch.log10(x.pow(2).mean() / err).item()


def _put(tensors: dict, name: str, x: torch.Tensor, values: str) -> None:
    if values == "int8":
        tensors.update({f"{name}.{k}": v.contiguous() for k, v in quantize(x).items()})
    else:
        tensors[name] = x.contiguous()


def _get(t: dict, name: str) -> torch.Tensor:
    return dequantize(t[f"{name}.q"], t[f"{name}.scale"]) if f"{name}.q" in t else t[name]


def save_split(data: TaskData, folder: Path, objective: str, split: str, values: str = "float32") -> float:
    """One split of one objective's TaskData -> <objective>-<split>.safetensors and .json.gz in `folder`; -> the
    stored means' SQNR in dB (inf for float32). values: float32 (exact) or int8 (`quantize`: a quarter of the
    size). The captioned pictures' means are stored once where they are the scenes' (the synthetic sets)."""
    from safetensors.torch import save_file
    if values not in VALUES:
        raise ValueError(f"values must be one of {list(VALUES)}, got {values!r}")
    d = data.clevr_mu.shape[-1]
    speech_rows, speech_len = _ragged([mu for mu, _ in data.speech], d)
    same = data.coco_mu.shape == data.clevr_mu.shape and torch.equal(data.coco_mu, data.clevr_mu)
    tensors = {"image_std.mean": data.image_std.mean, "image_std.std": data.image_std.std, "speech_len": speech_len}
    _put(tensors, "clevr_mu", data.clevr_mu, values)
    if not same:
        _put(tensors, "coco_mu", data.coco_mu, values)
    _put(tensors, "speech_mu", speech_rows, values)
    if data.slot_targets is not None:  # the object slots' targets (`mllm.slots`) in float16, which holds the value
        # indices exactly and the centres to 1e-3 of the picture: 0.7 MB for 12000 scenes
        tensors["slot_targets"] = data.slot_targets.half().contiguous()
    save_file(tensors, str(folder / f"{objective}-{split}.safetensors"))
    text = {"questions": data.questions, "families": data.families, "captions": data.captions,
            "listings": data.listings, "programs": data.programs, "speech_text": [t for _, t in data.speech],
            "layouts": data.layouts, "layout_scenes": _layout_scenes(data.layout_scenes), "coco_is_clevr": same}
    with gzip.open(folder / f"{objective}-{split}.json.gz", "wt") as f:  # a tenth of the size: it travels
        json.dump(text, f)
    exact = torch.cat([data.clevr_mu.reshape(-1, d), speech_rows])
    return sqnr_db(exact, torch.cat([_get(tensors, "clevr_mu").reshape(-1, d), _get(tensors, "speech_mu")]))


def _layout_scenes(scenes: dict) -> list:
    """The lay task's scenes [(image index, [(u, v, object)])], each object with what a layout writes of it (its
    size, colour, material, shape: `layout.written`) and no more of its scene record."""
    return [(i, [(u, v, {k: o[k] for k in ("size", "color", "material", "shape")}) for u, v, o in placed])
            for i, placed in sorted(scenes.items())]


def _text(folder: Path, objective: str, split: str) -> dict:
    with gzip.open(folder / f"{objective}-{split}.json.gz", "rt") as f:
        return json.load(f)


def load_split(folder: str | Path, objective: str, split: str, image_link, audio_link, vocab: seq.Vocab,
               limit: int | None = None) -> TaskData:
    """TaskData of one split as `save_split` wrote it. `limit`: its first `limit` scenes and captioned pictures, as
    TaskData's own `limit` (for miniature runs), and every clip (TaskData's limit counts transcript files, which
    the cache does not keep)."""
    from safetensors.torch import load_file
    folder = Path(folder)
    t = load_file(str(folder / f"{objective}-{split}.safetensors"))
    text = _text(folder, objective, split)
    data = TaskData.__new__(TaskData)
    data.vocab, data.image_link, data.audio_link = vocab, image_link, audio_link
    clevr = _get(t, "clevr_mu")
    data.clevr_mu = clevr[:limit]
    n = len(data.clevr_mu)
    keep = [i for i, (im, _, _) in enumerate(text["questions"]) if im < n]
    data.questions = [tuple(text["questions"][i]) for i in keep]
    data.families = [text["families"][i] for i in keep]
    data.listings = [tuple(x) for x in text.get("listings", []) if x[0] < n]  # caches made before "obj": none
    index = {old: new for new, old in enumerate(keep)}  # the questions' programs ("prog"); caches before it: none
    data.programs = [(index[q], p) for q, p in text.get("programs", []) if q in index]
    # what `train mllm --object-slots` reads (`train.attach_slot_targets`); None: a cache made before the slots,
    # or of scenes not of the tiny preset
    data.cached_slot_targets = t["slot_targets"][:n].float() if "slot_targets" in t else None
    data.coco_mu = (clevr if text["coco_is_clevr"] else _get(t, "coco_mu"))[:limit]
    kept = [j for j, c in enumerate(text["captions"]) if c[0] < len(data.coco_mu)]
    data.captions = [tuple(text["captions"][j]) for j in kept]
    # the lay task's (caption, scene) pairs and the scenes' placed objects; caches made before it: none
    caption_index = {old: new for new, old in enumerate(kept)}
    data.layouts = [(caption_index[c], i) for c, i in text.get("layouts", []) if c in caption_index and i < n]
    data.layout_scenes = {i: [(x, y, o) for x, y, o in placed] for i, placed in text.get("layout_scenes", [])
                          if i < n}
    speech = list(zip(_unragged(_get(t, "speech_mu"), t["speech_len"]), text["speech_text"]))
    data.speech = speech if audio_link is not None else []
    data.image_std = Standardizer(t["image_std.mean"], t["image_std.std"])
    if limit is not None:  # as TaskData fits it: on the pictures it kept
        data.image_std = Standardizer.fit(data.coco_mu)
    data.spoken, data.spoken_families = [], []  # spoken questions are not cached: `train mllm --spoken` reads
    # them from the data set
    return data


def load_captions(folder: str | Path, objective: str, split: str, vocab: seq.Vocab,
                  limit: int | None = None) -> CaptionData:
    """T2I's part of a cached split (what the diffusion head's phase reads), as CaptionData.load returns it."""
    from safetensors.torch import load_file
    folder = Path(folder)
    t = load_file(str(folder / f"{objective}-{split}.safetensors"))
    text = _text(folder, objective, split)
    coco_mu = _get(t, "clevr_mu" if text["coco_is_clevr"] else "coco_mu")[:limit]
    return CaptionData(vocab, coco_mu, [tuple(c) for c in text["captions"] if c[0] < len(coco_mu)])


def links_of(folder: str | Path, objective: str) -> dict[str, str]:
    """The link files a cache's `objective` was made with, as `load_links` takes them."""
    meta = read_meta(folder)
    if objective not in meta["objectives"]:
        raise ValueError(f"{folder}: a token cache of {', '.join(meta['objectives'])} tokens, not {objective}'s "
                         f"(make one with `unitocom train token-cache --objectives {objective}`)")
    return {k: str(Path(folder) / "links" / v["file"]) for k, v in meta["objectives"][objective]["links"].items()}


def check_links(folder: str | Path, objective: str, paths: dict[str, str]) -> None:
    """ValueError unless the links at `paths` are byte for byte those the cache's means were made with."""
    made = read_meta(folder)["objectives"][objective]["links"]
    for k, v in made.items():
        if k in paths and file_sha256(paths[k]) != v["sha256"]:
            raise ValueError(f"{folder}: its {objective} means were made with {k} link {v['file']} "
                             f"(sha256 {v['sha256'][:12]}), not with {paths[k]}; remake the cache or train with "
                             "the links it keeps (the default when --data is a cache)")


def _slot_targets(data_dir: str | Path, split: str, n: int, log) -> torch.Tensor | None:
    """The split's object-slot targets (`mllm.slots.targets`) for the cache; None, said, where its scenes are not
    the tiny preset's (real CLEVR: the slots' values are the generator's) or it has no scene records."""
    from unitocom.mllm import slots
    try:
        return slots.targets(data_dir, split, n)
    except ValueError as e:
        log(f"{split}: no object-slot targets in the cache ({e})")
        return None


def make(data_dir: str | Path, out: str | Path, objectives: list[str], preset: str = "tiny",
         links: dict[str, dict[str, str]] | None = None, values: str = "float32", log=print) -> dict:
    """Write the token cache of `data_dir`'s train and val splits for each objective's installed tokenizers
    (`links`: other link files by objective, as `load_links` takes them) into `out`, means stored as `values`
    (`save_split`); -> its meta."""
    import time

    from unitocom import config
    from unitocom.data.make import dataset_checksum
    from unitocom.mllm.checkpoint import load_links
    out = Path(out)
    (out / "links").mkdir(parents=True, exist_ok=True)
    cfg = config.load(preset)
    meta = {"format": FORMAT, "preset": preset, "data": str(data_dir),
            "data_checksum": dataset_checksum(data_dir), "values": values, "objectives": {}}
    for objective in objectives:
        t0 = time.time()
        image_link, audio_link, frontend, vocab, paths = load_links(cfg, (links or {}).get(objective), objective)
        kept, sqnr = {}, {}
        for k, p in paths.items():
            if p and Path(p).exists():
                shutil.copyfile(p, out / "links" / Path(p).name)
                kept[k] = {"file": Path(p).name, "sha256": file_sha256(p)}
        for split in SPLITS:
            data = TaskData(data_dir, split, image_link, audio_link, frontend, vocab, cfg.preset.image_size_px)
            data.slot_targets = _slot_targets(data_dir, split, len(data.clevr_mu), log)
            sqnr[split] = save_split(data, out, objective, split, values)
            log(f"{objective} {split}: {data.counts()}" + (f", means at {sqnr[split]:.1f} dB SQNR" if
                                                            values != "float32" else ""))
        meta["objectives"][objective] = {"links": kept, "seconds": round(time.time() - t0, 1),
                                         **({"sqnr_db": {k: round(v, 2) for k, v in sqnr.items()}}
                                            if values != "float32" else {})}
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta
