"""Request bodies → (decoded image, options), or a :class:`RequestError` with a 4xx status.

Three ways to send an image, all to ``POST /predict``:

* JSON: ``{"image": "<base64>", "topk": 3}`` (``Content-Type: application/json``);
* multipart form: a file field ``image`` plus optional option fields (``topk=3``);
* the raw file: ``Content-Type: image/jpeg`` (or any ``image/*``), options in the query string.

Images are decoded with the same guards as :func:`visiontune.data.read_image`: empty, not an
image, truncated, corrupt and too many pixels (decompression bombs) are refused with a message
naming the reason; EXIF orientation is applied and every mode becomes 8-bit RGB.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ValidationError

from visiontune.data.decode import DEFAULT_MAX_PIXELS, to_rgb

#: The request field that carries the image.
IMAGE_FIELD = "image"


class RequestError(Exception):
    """A bad request: ``status`` (4xx) and a message saying what to send instead."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message

    def to_dict(self) -> dict:
        """The error as the JSON body of a response."""
        return {"error": {"status": self.status, "message": self.message}}


def max_pixels() -> int:
    """The pixel limit: ``$VISIONTUNE_MAX_IMAGE_PIXELS`` or the library default."""
    env = os.environ.get("VISIONTUNE_MAX_IMAGE_PIXELS")
    try:
        return int(env) if env else DEFAULT_MAX_PIXELS
    except ValueError:
        return DEFAULT_MAX_PIXELS


def decode_image(data: bytes, name: str = "image", limit: int | None = None) -> Image.Image:
    """Bytes of an image file → 8-bit RGB PIL image (EXIF orientation applied), or a 400/413."""
    limit = max_pixels() if limit is None else int(limit)
    if not data:
        raise RequestError(400, f"{name}: the image is empty (0 bytes); send the bytes of a JPEG/PNG/... file")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            w, h = opened.size
            if w <= 0 or h <= 0:
                raise RequestError(400, f"{name}: image has no pixels ({w}x{h})")
            if w * h > limit:
                raise RequestError(
                    413,
                    f"{name}: {w}x{h} = {w * h:,} pixels exceeds the server's limit of {limit:,} "
                    "(possible decompression bomb); send a smaller image",
                )
            if getattr(opened, "n_frames", 1) > 1:
                opened.seek(0)
            opened.load()
            img: Image.Image = opened
            try:
                img = ImageOps.exif_transpose(img) or img
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                pass
            rgb = to_rgb(img)
            return rgb.copy() if rgb is opened else rgb
    except RequestError:
        raise
    except (UnidentifiedImageError, ImportError):
        raise RequestError(
            400, f"{name}: not a recognised image format ({len(data)} bytes, starts with {data[:16]!r})"
        ) from None
    except Image.DecompressionBombError as e:
        raise RequestError(413, f"{name}: refused as a possible decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = f"truncated file ({reason})"
        raise RequestError(400, f"{name}: cannot decode the image: {reason}") from None


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError(422, f"field '{IMAGE_FIELD}' must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:") and "," in value:  # a data: URL
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError(422, f"field '{IMAGE_FIELD}' is not valid base64 ({e})") from None


def validate_options(raw: dict, options_model: type[BaseModel]) -> BaseModel:
    """Options dict → the task's options model; unknown or wrong fields are a 422 naming them."""
    try:
        return options_model.model_validate(raw)
    except ValidationError as e:
        allowed = ", ".join([IMAGE_FIELD, *options_model.model_fields])
        problems = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ())) or "(body)"
            msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg")
            problems.append(f"'{loc}': {msg}")
        raise RequestError(422, "; ".join(problems) + f" (fields: {allowed})") from None


def _coerce_form(value: str) -> Any:
    """A form / query value: JSON when it parses (numbers, lists, null), the string otherwise."""
    try:
        return json.loads(value)
    except (json.JSONDecodeError, ValueError):
        return value


def parse_json(body: bytes, options_model: type[BaseModel]) -> tuple[bytes, BaseModel]:
    """A JSON body → (image bytes, options)."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f'the body is not valid JSON ({e}); send {{"{IMAGE_FIELD}": "<base64>"}}') from None
    return parse_doc(doc, options_model)


def parse_doc(doc: Any, options_model: type[BaseModel]) -> tuple[bytes, BaseModel]:
    """A parsed JSON document → (image bytes, options)."""
    if not isinstance(doc, dict):
        raise RequestError(
            422, f"the JSON body must be an object with a '{IMAGE_FIELD}' field, got {type(doc).__name__}"
        )
    if IMAGE_FIELD not in doc:
        raise RequestError(
            422, f"missing field '{IMAGE_FIELD}' (a base64 string); got fields: {', '.join(map(str, doc)) or 'none'}"
        )
    doc = dict(doc)
    data = _b64(doc.pop(IMAGE_FIELD))
    return data, validate_options(doc, options_model)


def parse_fields(fields: dict[str, str], options_model: type[BaseModel]) -> BaseModel:
    """Text fields of a form or query string → options."""
    return validate_options({k: _coerce_form(v) for k, v in fields.items()}, options_model)


def content_kind(content_type: str) -> str:
    """``json``, ``multipart``, ``raw`` (an image/* or octet-stream body), or a 415."""
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct in ("application/json", "text/json") or ct.endswith("+json"):
        return "json"
    if ct == "multipart/form-data":
        return "multipart"
    if ct.startswith("image/") or ct == "application/octet-stream":
        return "raw"
    raise RequestError(
        415,
        f"unsupported Content-Type {content_type or '(none)'!r}: send application/json "
        f'({{"{IMAGE_FIELD}": "<base64>"}}), multipart/form-data (file field \'{IMAGE_FIELD}\') or image/*',
    )


def payload_bytes(data: bytes) -> str:
    """Image bytes → the base64 text of a JSON request."""
    return base64.b64encode(data).decode("ascii")
