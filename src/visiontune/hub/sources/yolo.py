"""Ultralytics YOLO (optional extra ``[yolo]``, AGPL-3.0): ``yolo:yolo11n.pt`` or ``yolo:path/x.pt``.

Ultralytics ``.pt`` files are pickles: loading one runs code from the file, so it needs
``trust_pickle=True``. ``yolo:yolo11n.yaml`` builds an untrained model from its config (no pickle).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from visiontune.errors import WeightsNotCachedError, require
from visiontune.hub import offline
from visiontune.hub.card import Card
from visiontune.hub.ids import ModelId
from visiontune.hub.licenses import COCO_NOTE
from visiontune.hub.options import LoadOptions
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import Pretrained, count_params
from visiontune.hub.registry import Source, register_source
from visiontune.hub.trust import require_pickle_trust

log = logging.getLogger("visiontune.hub")
NOTE = "Official Ultralytics releases are pickles too; `yolo:<name>.yaml` builds an untrained model without one."
TASKS = {
    "detect": "detection",
    "segment": "instance-segmentation",
    "classify": "classification",
    "pose": "pose",
    "obb": "obb",
}
AGPL_NOTICE = (
    "Ultralytics YOLO code and weights are AGPL-3.0: shipping them in a product or serving them "
    "over a network obliges you to publish that product's source, unless you hold an "
    "Ultralytics Enterprise licence. See `visiontune license yolo:...`."
)


def _import_ultralytics() -> Any:
    """Import Ultralytics and undo its process-wide patch of ``PIL.Image.open``: that patch turns
    every undecodable file into a ``pip install pi-heif`` attempt (offline: ModuleNotFoundError),
    which would break visiontune's decode-error policy for every image read after a yolo: load."""
    from PIL import Image

    before = Image.open
    ultralytics = require("ultralytics", "yolo", "Loading Ultralytics YOLO models (AGPL-3.0)")
    try:
        from ultralytics.utils import patches

        Image.open = getattr(patches, "_image_open", before)
    except ImportError:  # an Ultralytics without the patch module: nothing to undo
        Image.open = before
    return ultralytics


def _weights_dir() -> Path | None:
    try:
        _import_ultralytics()
        from ultralytics.utils import SETTINGS

        return Path(SETTINGS["weights_dir"])
    except Exception:
        return None


def locate(name: str) -> Path | None:
    """The file for Ultralytics id ``name``: the path itself, else the one in Ultralytics' weights folder, else None."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    wd = _weights_dir()
    if wd is not None and (wd / p.name).is_file():
        return wd / p.name
    return None


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    """Load ``yolo:<file>`` through the trust gate as a `Pretrained` (Ultralytics, AGPL-3.0)."""
    if offline.offline_forced():
        os.environ.setdefault("YOLO_OFFLINE", "1")  # no DNS lookups at import
    ultralytics = _import_ultralytics()
    name = str(opts.weights or mid.name)
    is_cfg = name.endswith((".yaml", ".yml"))
    if is_cfg:
        src = name
    else:
        path = locate(name)
        if path is None:
            given = Path(name).expanduser()
            if given.parent != Path("."):
                raise WeightsNotCachedError(
                    f"no such Ultralytics weights file: {given}. Pass the path of a local .pt file, or a model "
                    "YAML (yolo:yolo11n.yaml builds an untrained model).",
                    filename=given.name,
                    directory=str(given.parent),
                )
            if not offline.can_reach("github.com"):
                wd = _weights_dir() or Path.cwd()
                raise WeightsNotCachedError(
                    f"Ultralytics weights {given.name} are not on disk and github.com cannot be reached. Put "
                    f"{given.name} in {wd} (Ultralytics' weights_dir), pass the path of a local .pt file "
                    f"(yolo:/path/to/{given.name}), or a model YAML (yolo:yolo11n.yaml builds untrained).",
                    filename=given.name,
                    directory=str(wd),
                )
            require_pickle_trust(name, trust_pickle=opts.trust_pickle, what="Ultralytics .pt checkpoint", note=NOTE)
            src = name  # ultralytics downloads it
        else:
            require_pickle_trust(path, trust_pickle=opts.trust_pickle, what="Ultralytics .pt checkpoint", note=NOTE)
            src = str(path)
    log.warning(AGPL_NOTICE)
    yolo = ultralytics.YOLO(src)
    return from_ultralytics(yolo, str(mid), weights_file=None if is_cfg else src)


def from_ultralytics(yolo: Any, model_id: str, weights_file: str | None = None) -> Pretrained:
    """A `Pretrained` around an Ultralytics ``YOLO`` object already in memory."""
    net = yolo.model
    names = yolo.names if isinstance(getattr(yolo, "names", None), dict) else {}
    class_names = [str(names[i]) for i in sorted(names)] if names else None
    imgsz = 640
    args = getattr(net, "args", None)
    if isinstance(args, dict) and args.get("imgsz"):
        imgsz = int(args["imgsz"]) if not isinstance(args["imgsz"], (list, tuple)) else int(args["imgsz"][0])
    card = Card(
        source="yolo",
        name=Path(weights_file or model_id).stem,
        model_id=model_id,
        weights=Path(weights_file).name if weights_file else None,
        task=TASKS.get(getattr(yolo, "task", "detect"), "detection"),
        pretrained=weights_file is not None,
        class_names=class_names,
        num_classes=len(class_names) if class_names else None,
        input_size=(3, imgsz, imgsz),
        resize_size=imgsz,
        interpolation="bilinear",
        mean=None,
        std=None,
        preprocess_source="Ultralytics letterbox to imgsz, RGB, /255 (done inside YOLO.predict)",
        license_code="AGPL-3.0",
        license_weights="AGPL-3.0",
        license_notes=[AGPL_NOTICE, COCO_NOTE],
        num_params=count_params(net),
        weights_file=weights_file,
    )
    if weights_file is None:
        card.extra["random_weights"] = True
    pre = Preprocess(resize=None, crop=None, mean=None, std=None, extra={"letterbox": imgsz})
    return Pretrained(net, card, pre, native=yolo)


@register_source
class UltralyticsSource(Source):
    """``yolo:<name>.pt`` / ``yolo:/path/x.pt`` (pickles: need trust_pickle) or ``yolo:<name>.yaml``."""

    name = "yolo"
    aliases = ("ultralytics",)

    def parse(self, rest: str, text: str) -> tuple[str, str | None]:
        """``(id, None)``: Ultralytics ids are kept whole (file names may contain ``@``)."""
        return rest, None  # file names may contain '@': keep yolo ids whole

    build = staticmethod(build)
