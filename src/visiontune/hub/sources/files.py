"""``file:PATH``: a saved visiontune model directory (or a Hugging Face save_pretrained folder,
or an Ultralytics .pt). A bare state dict has no architecture: pass it as ``weights=`` instead."""

from __future__ import annotations

import json
from pathlib import Path

from visiontune.errors import VisiontuneError
from visiontune.hub.card import Card
from visiontune.hub.checkpoint import load_into, sha256_file
from visiontune.hub.ids import ModelId
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import CARD_FILE, SAVED_FORMAT, WEIGHTS_FILE, Pretrained
from visiontune.hub.sources._common import LoadOptions


def build(mid: ModelId, opts: LoadOptions, loader) -> Pretrained:
    path = Path(mid.name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_file() and path.parent.joinpath(CARD_FILE).is_file():
        path = path.parent
    if path.is_dir() and (path / CARD_FILE).is_file():
        return load_saved(path, opts, loader)
    if path.is_dir() and (path / "config.json").is_file():
        return loader(f"hf:{path}", opts)
    if path.suffix == ".pt" and _looks_ultralytics(path):
        return loader(f"yolo:{path}", opts)
    raise VisiontuneError(
        f"{path} is not a saved visiontune model (no {CARD_FILE}). A weights file alone does not say "
        "which architecture it belongs to: load it as visiontune.load('timm:<arch>', weights='"
        f"{path}') or visiontune.load('torchvision:<arch>', weights=...)."
    )


def _looks_ultralytics(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("ultralytics" in n for n in z.namelist()[:50]) or any(
                b"ultralytics" in z.read(n)[:20000] for n in z.namelist() if n.endswith("data.pkl")
            )
    except Exception:
        return False


def load_saved(directory: Path, opts: LoadOptions, loader) -> Pretrained:
    """Rebuild the architecture from its base id (no pretrained download), re-apply the head,
    then load ``model.safetensors`` strictly."""
    doc = json.loads((directory / CARD_FILE).read_text())
    if isinstance(doc.get("detect"), dict):
        # A saved detector rebuilds from its recipe (visiontune.detect writes and reads it).
        from visiontune.detect.models import load_saved as load_saved_detector

        det = load_saved_detector(directory)
        card = (
            Card.model_validate(doc["card"])
            if isinstance(doc.get("card"), dict)
            else Card(source="file", name=directory.name, model_id=str(directory), task="detection")
        )
        return Pretrained(det.model, card, Preprocess(resize=None, crop=None, mean=None, std=None), native=det)
    if doc.get("format") != SAVED_FORMAT:
        raise VisiontuneError(f"{directory / CARD_FILE} is not a visiontune model card (format={doc.get('format')!r})")
    card = Card.model_validate(doc["card"])
    base = doc.get("base_id") or card.base_id or card.model_id
    if card.source == "hf":
        base = f"hf:{directory}"  # the saved config.json rebuilds the architecture
    base_opts = LoadOptions(pretrained=False, trust_remote_code=opts.trust_remote_code)
    built = loader(base, base_opts)
    model = built.model
    if card.head:
        from visiontune.hub.heads import apply_head_spec

        apply_head_spec(model, card.head, card.class_names)
    from safetensors.torch import load_file

    wfile = directory / WEIGHTS_FILE
    if not wfile.is_file():
        raise VisiontuneError(f"{directory} has {CARD_FILE} but no {WEIGHTS_FILE}: the save is incomplete")
    sd = load_file(str(wfile), device="cpu")
    load_into(model, sd, strict=True, remap=False, source=str(wfile))
    pre = Preprocess.from_dict(doc["preprocess"])
    card.weights_file = str(wfile)
    card.weights_sha256 = doc.get("weights_sha256") or sha256_file(wfile)
    card.extra = {
        **card.extra,
        "saved": {"path": str(directory), "training": doc.get("training", {}), "created": doc.get("created")},
    }
    p = Pretrained(model, card, pre, native=built.native)
    if opts.num_classes is not None and opts.num_classes != card.num_classes:
        from visiontune.hub.sources._common import finish

        p.card = finish(model, card, opts)
    return p
