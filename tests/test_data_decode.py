"""read_image on real files of every awkward kind, written here with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from visiontune.data import is_image_file, read_image
from visiontune.errors import ImageDecodeError


def _noise(w=64, h=48, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_rgb_jpeg_roundtrip(tmp_path):
    p = tmp_path / "a.JPG"
    _noise().save(p, quality=95)
    img = read_image(p)
    assert img.mode == "RGB" and img.size == (64, 48)


def test_exif_rotation_is_applied(tmp_path):
    # Stored 40 wide x 20 high: left half red, right half blue. EXIF orientation 6 means
    # "rotate 90 degrees clockwise to display": the left half must end up on top.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(p, exif=exif.tobytes(), quality=100)
    with Image.open(p) as raw:
        assert raw.size == (40, 20)  # stored unrotated
    img = read_image(p)
    assert img.size == (20, 40)
    top, bottom = np.asarray(img)[5, 10], np.asarray(img)[35, 10]
    assert top[0] > 200 and top[2] < 60, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom  # blue at the bottom


def test_cmyk_jpeg(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, quality=100)  # pure red in CMYK
    with Image.open(p) as raw:
        assert raw.mode == "CMYK"
    px = np.asarray(read_image(p))[8, 8]
    assert read_image(p).mode == "RGB"
    assert px[0] > 230 and px[1] < 30 and px[2] < 30, px


def test_16bit_png_scaled_to_8bit(tmp_path):
    arr = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    with Image.open(p) as raw:
        assert raw.mode in ("I;16", "I")
    out = np.asarray(read_image(p))
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 1]).all()


def test_float_tiff_scaled(tmp_path):
    arr = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    p = tmp_path / "f.tif"
    Image.fromarray(arr, mode="F").save(p)
    assert np.asarray(read_image(p))[0, :, 0].tolist() == [0, 128, 255]


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 0)  # fully transparent red -> white
    arr[0, 1] = (0, 0, 255, 255)  # opaque blue -> blue
    arr[1, 0] = (0, 0, 0, 128)  # half transparent black -> mid grey
    arr[1, 1] = (0, 255, 0, 255)
    p = tmp_path / "alpha.png"
    Image.fromarray(arr, "RGBA").save(p)
    out = np.asarray(read_image(p)).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [0, 0, 255]
    assert all(abs(v - 127) <= 2 for v in out[1, 0])


def test_palette_with_transparency_and_gray_modes(tmp_path):
    p = tmp_path / "pal.png"
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 1  # index 1 (red) is transparent -> white
    img.save(p, transparency=1)
    assert np.asarray(read_image(p))[0, 0].tolist() == [255, 255, 255]
    q = tmp_path / "la.png"
    Image.new("LA", (3, 3), (10, 255)).save(q)
    assert np.asarray(read_image(q))[1, 1].tolist() == [10, 10, 10]
    g = tmp_path / "g.bmp"
    Image.new("L", (3, 3), 77).save(g)
    assert np.asarray(read_image(g))[0, 0].tolist() == [77, 77, 77]


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    px = np.asarray(read_image(p))[4, 4]
    assert px[0] > 200 and px[2] < 50


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    _noise(128, 128).save(buf, "JPEG", quality=95)
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError) as e:
        read_image(p)
    assert str(p) in str(e.value) and "truncated" in str(e.value)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "page.jpg"
    p.write_text("<html>404 not found</html>")
    with pytest.raises(ImageDecodeError) as e:
        read_image(p)
    assert str(p) in str(e.value) and "not a recognised image" in str(e.value) and "<html>" in str(e.value)


def test_zero_byte_missing_and_folder(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        read_image(p)
    with pytest.raises(ImageDecodeError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(ImageDecodeError, match="folder"):
        read_image(tmp_path / "d.jpg")


def test_decompression_bomb_guard(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(p)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        read_image(p, max_pixels=100_000)
    monkeypatch.setenv("VISIONTUNE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageDecodeError, match="1,000"):
        read_image(p)
    assert read_image(p, max_pixels=120_000).size == (400, 300)


def test_is_image_file():
    assert is_image_file("a/B.JPEG") and is_image_file("x.TiFf") and is_image_file("x.webp")
    assert not is_image_file(".hidden.jpg") and not is_image_file("notes.txt") and not is_image_file("x.svg")


def test_patched_image_open_import_error_is_a_decode_error(tmp_path, monkeypatch):
    """Libraries such as ultralytics patch Image.open to fetch a decoder plugin for unknown
    formats; when that fails they raise ImportError. It must still be a clean ImageDecodeError."""
    from PIL import Image

    from visiontune.data import read_image
    from visiontune.errors import ImageDecodeError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not an image at all")
    real_open = Image.open

    def patched(fp, *a, **k):
        try:
            return real_open(fp, *a, **k)
        except Image.UnidentifiedImageError:
            import pi_heif_not_installed_xyz  # noqa: F401  (raises ModuleNotFoundError)

    monkeypatch.setattr(Image, "open", patched)
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        read_image(bad)
