"""Detection annotation formats, one module per format, each a reader + writer pair over plain
records (`visiontune.detect.records.ImageRecord` list + class names + image root):

- `coco`: ``read_coco`` / ``write_coco`` (instances JSON, ``bbox`` = ``x, y, w, h`` px)
- `yolo`: ``read_yolo`` / ``write_yolo`` (``labels/*.txt`` normalised ``cx cy w h`` + data.yaml)
- `voc`: ``read_voc`` / ``write_voc`` (Pascal VOC XML, pixel ``x1 y1 x2 y2``)

Readers return `visiontune.detect.records.Loaded`; `visiontune.detect.datasets` wraps them in a
`DetectionDataset`. Nothing here imports the dataset module.
"""

from visiontune.detect.formats.coco import read_coco, write_coco
from visiontune.detect.formats.voc import read_voc, write_voc
from visiontune.detect.formats.yolo import read_yolo, write_yolo

#: format name -> (reader, writer)
FORMATS = {
    "coco": (read_coco, write_coco),
    "yolo": (read_yolo, write_yolo),
    "voc": (read_voc, write_voc),
}

__all__ = ["FORMATS", "read_coco", "read_voc", "read_yolo", "write_coco", "write_voc", "write_yolo"]
