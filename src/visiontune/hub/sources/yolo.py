"""Ultralytics YOLO (optional extra ``[yolo]``, AGPL-3.0): ``yolo:yolo11n.pt`` or ``yolo:path/x.pt``.

Ultralytics ``.pt`` files are pickles: loading one runs code from the file, so it needs
``trust_pickle=True``. ``yolo:yolo11n.yaml`` builds an untrained model from its config (no pickle).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from visiontune.errors import UnsafeCheckpointError, WeightsNotCachedError, require
from visiontune.hub import offline
from visiontune.hub.card import Card
from visiontune.hub.ids import ModelId
from visiontune.hub.licenses import COCO_NOTE
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import Pretrained, count_params
from visiontune.hub.sources._common import LoadOptions

AGPL_NOTICE = (
    "Ultralytics YOLO code and weights are AGPL-3.0: shipping them in a product or serving them "
    "over a network obliges you to publish that product's source, unless you hold an "
    "Ultralytics Enterprise licence. See `visiontune license yolo:...`."
)


def _weights_dir() -> Path | None:
    try:
        from ultralytics.utils import SETTINGS

        return Path(SETTINGS["weights_dir"])
    except Exception:
        return None


def locate(name: str) -> Path | None:
    p = Path(name).expanduser()
    if p.is_file():
        return p
    wd = _weights_dir()
    if wd is not None and (wd / p.name).is_file():
        return wd / p.name
    return None


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    if offline.offline_forced():
        os.environ.setdefault("YOLO_OFFLINE", "1")  # no DNS lookups at import
    ultralytics = require("ultralytics", "yolo", "Loading Ultralytics YOLO models (AGPL-3.0)")
    name = str(opts.weights or mid.name)
    is_cfg = name.endswith((".yaml", ".yml"))
    if is_cfg:
        src = name
    else:
        path = locate(name)
        if path is None:
            if not offline.can_reach("github.com"):
                wd = _weights_dir() or Path.cwd()
                raise WeightsNotCachedError(
                    f"Ultralytics weights {Path(name).name} are not on disk and github.com cannot be reached. "
                    f"Put {Path(name).name} in {wd} (Ultralytics' weights_dir) or pass yolo:/path/to/{Path(name).name}.",
                    filename=Path(name).name,
                    directory=str(wd),
                )
            if not opts.trust_pickle:
                raise UnsafeCheckpointError(_pickle_msg(name))
            src = name  # ultralytics downloads it
        else:
            if not opts.trust_pickle:
                raise UnsafeCheckpointError(_pickle_msg(str(path)))
            src = str(path)
    print(f"[visiontune] {AGPL_NOTICE}", file=sys.stderr)
    yolo = ultralytics.YOLO(src)
    net = yolo.model
    names = yolo.names if isinstance(getattr(yolo, "names", None), dict) else {}
    class_names = [names[i] for i in sorted(names)] if names else None
    imgsz = 640
    try:
        imgsz = int(getattr(net, "args", {}).get("imgsz", 640))
    except Exception:
        pass
    card = Card(
        source="yolo",
        name=Path(name).stem,
        model_id=str(mid),
        weights=None if is_cfg else Path(src).name,
        task={
            "detect": "detection",
            "segment": "segmentation",
            "classify": "classification",
            "pose": "pose",
            "obb": "obb",
        }.get(getattr(yolo, "task", "detect"), "detection"),
        pretrained=not is_cfg,
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
        weights_file=None if is_cfg else src,
    )
    pre = Preprocess(resize=None, crop=None, mean=None, std=None, extra={"letterbox": imgsz})
    return Pretrained(net, card, pre, native=yolo)


def _pickle_msg(path: str) -> str:
    return (
        f"{path} is an Ultralytics .pt file, which is a pickle: loading it runs code from the file. "
        "visiontune refuses pickle by default; pass trust_pickle=True (CLI --trust-pickle) if you "
        "trust its source (e.g. the official Ultralytics release)."
    )
