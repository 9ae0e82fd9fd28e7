"""``file:PATH`` (or a bare existing path): a saved visiontune model directory — classifier,
detector or any other task, one format — or a Hugging Face ``save_pretrained`` folder, or an
Ultralytics ``.pt``. A bare state dict has no architecture: pass it as ``weights=`` instead."""

from __future__ import annotations

import zipfile
from pathlib import Path

from safetensors.torch import load_file

from visiontune.errors import ConfigError, VisiontuneError
from visiontune.hub.checkpoint import load_into, sha256_file
from visiontune.hub.heads import apply_head_spec
from visiontune.hub.ids import ModelId
from visiontune.hub.loader import dispatch
from visiontune.hub.options import LoadOptions
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.registry import Source, build_architecture, get_source, register_source
from visiontune.hub.saved import CARD_FILE, WEIGHTS_FILE, SavedModel
from visiontune.hub.sources._common import finish


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    """Route a path to the loader that reads it."""
    path = Path(mid.name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    if path.is_file() and path.parent.joinpath(CARD_FILE).is_file():
        path = path.parent
    if path.is_dir() and (path / CARD_FILE).is_file():
        return load_saved(path, opts)
    if path.is_dir() and (path / "config.json").is_file():
        return get_source("hf").build(ModelId("hf", str(path)), opts)
    if path.suffix == ".pt" and looks_ultralytics(path):
        return get_source("yolo").build(ModelId("yolo", str(path)), opts)
    raise VisiontuneError(
        f"{path} is not a saved visiontune model (no {CARD_FILE}). A weights file alone does not say "
        "which architecture it belongs to: load it as visiontune.load('timm:<arch>', weights='"
        f"{path}') or visiontune.load('torchvision:<arch>', weights=...)."
    )


def looks_ultralytics(path: Path) -> bool:
    """True when a ``.pt`` zip names Ultralytics modules (read as bytes; nothing is unpickled)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            return any("ultralytics" in n for n in names[:50]) or any(
                b"ultralytics" in z.read(n)[:20000] for n in names if n.endswith("data.pkl")
            )
    except (OSError, zipfile.BadZipFile):
        return False


def load_saved(directory: Path, opts: LoadOptions) -> Pretrained:
    """Rebuild the architecture (from its base id with random weights, or from its recipe), put
    the saved head back, then load ``model.safetensors`` strictly. Nothing is unpickled."""
    record = SavedModel.read(directory / CARD_FILE)
    card = record.card
    native = None
    if record.recipe:
        model = build_architecture(record.recipe, trust_pickle=opts.trust_pickle)
        card.recipe = record.recipe
    else:
        base = record.base_id or card.base_id or card.model_id
        if card.source == "hf":
            base = f"hf:{directory}"  # the saved config.json rebuilds the architecture
        built = dispatch(
            base,
            LoadOptions(pretrained=False, trust_remote_code=opts.trust_remote_code, trust_pickle=opts.trust_pickle),
        )
        model, native = built.model, built.native
        if card.head:
            apply_head_spec(model, card.head, card.class_names)
    wfile = directory / WEIGHTS_FILE
    if not wfile.is_file():
        raise VisiontuneError(f"{directory} has {CARD_FILE} but no {WEIGHTS_FILE}: the save is incomplete")
    load_into(model, load_file(str(wfile), device="cpu"), strict=True, remap=False, source=str(wfile))
    card.weights_file = str(wfile)
    card.weights_sha256 = record.weights_sha256 or sha256_file(wfile)
    card.extra = {
        **card.extra,
        "saved": {"path": str(directory), "training": record.training, "created": record.created},
    }
    p = Pretrained(model, card, Preprocess.from_dict(record.preprocess), native=native)
    if opts.num_classes is not None and opts.num_classes != card.num_classes:
        p.card = finish(model, card, opts)
    elif opts.class_names is not None:
        if len(opts.class_names) != (card.num_classes or len(opts.class_names)):
            raise ConfigError(
                f"class_names has {len(opts.class_names)} names; {directory} predicts {card.num_classes} classes"
            )
        p.card.class_names = list(opts.class_names)
    return p


@register_source
class FileSource(Source):
    """``file:PATH``: saved visiontune models (every task), HF folders, Ultralytics files."""

    name = "file"

    def parse(self, rest: str, text: str) -> tuple[str, str | None]:
        """``(path, None)``: a file id is the path, taken whole."""
        return rest, None  # a path, taken whole

    build = staticmethod(build)
