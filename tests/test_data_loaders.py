"""The loaders read the committed fixtures, which are in the real CLEVR v1.0, COCO 2017 and LibriSpeech formats."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from unitocom.data.loaders import ClevrQuestions, CocoCaptions, LibriSpeech, load_clevr_scenes

FIXTURES = Path(__file__).parent / "fixtures"


def test_clevr_questions_from_the_parent_or_the_clevr_directory():
    ds = ClevrQuestions(FIXTURES / "clevr", "train")
    assert len(ds) == 3
    image, question, answer, family = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 320, 480)  # CLEVR: 480x320 RGBA, alpha dropped
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert question == "Are there more big red things than small blue metal balls?"
    assert (answer, family) == ("no", 29)
    again = ClevrQuestions(FIXTURES / "clevr" / "CLEVR_v1.0", "train")
    assert again[2].answer == "gray" and again[2].question == ds[2].question


def test_clevr_resizes_and_batches():
    ds = ClevrQuestions(FIXTURES / "clevr", "val", image_size_px=32)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch.image.shape == (2, 3, 32, 32)
    assert list(batch.answer) == ["yes", "rubber"]


def test_clevr_test_split_has_no_answers():
    ds = ClevrQuestions(FIXTURES / "clevr", "test")
    assert len(ds) == 2
    assert ds[0].answer == "" and ds[0].family == -1


def test_clevr_scenes():
    scenes = load_clevr_scenes(FIXTURES / "clevr", "train")
    assert [len(s["objects"]) for s in scenes] == [3, 2]
    assert {"3d_coords", "pixel_coords", "rotation", "material"} <= set(scenes[0]["objects"][0])
    with pytest.raises(FileNotFoundError):
        load_clevr_scenes(FIXTURES / "clevr", "test")  # CLEVR ships no test scenes


def test_coco_captions():
    ds = CocoCaptions(FIXTURES / "coco", "val")
    assert len(ds) == 2
    image, captions = ds[0]
    assert image.shape == (3, 48, 64)
    assert len(captions) == 3 and captions[0] == "A room with chairs, a table, and a woman in it."
    assert ds[1].captions[1] == "A large bear sitting in a field"  # COCO captions carry stray spaces
    square = CocoCaptions(FIXTURES / "coco", "val2017", image_size_px=32)
    assert square[1].image.shape == (3, 32, 32)
    explicit = CocoCaptions(FIXTURES / "coco", "train",
                            annotation_file=FIXTURES / "coco" / "annotations" / "captions_train2017.json")
    assert len(explicit) == 1 and len(explicit[0].captions) == 2


@pytest.mark.parametrize("root", ["librispeech", "librispeech/LibriSpeech", "librispeech/LibriSpeech/dev-clean"])
def test_librispeech_from_any_level(root):
    ds = LibriSpeech(FIXTURES / root, "dev-clean")
    assert [it[2] for it in ds.items] == ["84-121123-0000", "84-121123-0001", "174-50561-0000"]
    wave, rate, text, speaker, chapter, uid = ds[1]
    assert wave.dtype == torch.float32 and wave.ndim == 1 and rate == 16000
    assert (text, speaker, chapter, uid) == ("THE SIGNAL IS CLEAR TODAY", 84, 121123, "84-121123-0001")
    assert 0.1 < wave.numel() / rate < 1.0 and float(wave.abs().max()) <= 1.0


def test_librispeech_resamples_on_read():
    native = LibriSpeech(FIXTURES / "librispeech", "dev-clean")[0]
    fast = LibriSpeech(FIXTURES / "librispeech", "dev-clean", rate_hz=24000)[0]
    assert fast.rate_hz == 24000 and fast.wave.numel() == native.wave.numel() * 3 // 2


def test_missing_corpus_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match="CLEVR_v1.0"):
        ClevrQuestions(FIXTURES / "coco", "train")


def test_preloaded_images_equal_images_read_on_demand():
    for lazy, eager in ((ClevrQuestions(FIXTURES / "clevr", "train", image_size_px=32),
                         ClevrQuestions(FIXTURES / "clevr", "train", image_size_px=32, preload=True)),
                        (CocoCaptions(FIXTURES / "coco", "val", image_size_px=32),
                         CocoCaptions(FIXTURES / "coco", "val", image_size_px=32, preload=True))):
        for k in range(len(lazy)):
            assert torch.equal(lazy[k][0], eager[k][0])


def test_eval_sends_a_clevr_render_as_the_loaders_read_it():
    """Real CLEVR renders are 480x320: the loaders (training) squash them to a square, a transmitter crops the
    centre of a picture that is not square. `unitocom eval` squashes them itself, so that the transmitter only
    resizes and the model sees what it was trained on; a square picture goes as stored."""
    import io

    import numpy as np
    from PIL import Image

    from unitocom.data.loaders import read_pixels
    from unitocom.schemes.learned import fit_image
    from unitocom.task_eval import clevr_png
    path = FIXTURES / "clevr" / "CLEVR_v1.0" / "images" / "val" / "CLEVR_val_000000.png"
    sent = np.asarray(Image.open(io.BytesIO(clevr_png(path))).convert("RGB"))
    assert sent.shape == (480, 480, 3)
    seen, note = fit_image(sent, 32)
    assert "cropped" not in note
    trained = read_pixels(path, 32).astype(int)
    assert np.abs(seen.astype(int) - trained).mean() < 3.0  # bicubic twice against once: within a few levels
    cropped, _ = fit_image(np.asarray(Image.open(path).convert("RGB")), 32)
    assert np.abs(cropped.astype(int) - trained).mean() > 3 * np.abs(seen.astype(int) - trained).mean()

def test_eval_sends_a_square_picture_byte_for_byte(tmp_path):
    import numpy as np
    from PIL import Image

    from unitocom.task_eval import clevr_png
    Image.fromarray(np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)).save(tmp_path / "s.png")
    assert clevr_png(tmp_path / "s.png") == (tmp_path / "s.png").read_bytes()
