"""License facts and plain-language explanations shown by `visiontune license ID`."""

from __future__ import annotations

IMAGENET_NOTE = (
    "Trained on ImageNet: the ImageNet terms of access allow non-commercial research and "
    "education; whether weights trained on it may be used commercially is not settled. Check "
    "with your counsel before shipping them in a product."
)
COCO_NOTE = "Trained on COCO (annotations CC BY 4.0; images are Flickr photos under their own terms)."

EXPLAIN = {
    "agpl-3.0": (
        "AGPL-3.0 is a strong copyleft licence. If you distribute software that includes or links "
        "this code or these weights, the whole work must be released under the AGPL with its source. "
        "Unlike the GPL, it also applies to network use: offering the model behind a web service or "
        "API obliges you to offer the complete source of that service to its users. A closed-source "
        "product or SaaS needs a commercial licence from the copyright holder (for Ultralytics: an "
        "Enterprise licence)."
    ),
    "gpl-3.0": (
        "GPL-3.0 is a copyleft licence: distributing a program that includes it obliges you to "
        "release the whole program's source under the GPL. Running it privately or as a network "
        "service does not by itself trigger the obligation (that is the AGPL's addition)."
    ),
    "apache-2.0": (
        "Apache-2.0 is permissive: use, modify and ship it in closed products, keeping the licence "
        "and NOTICE files; it includes an explicit patent grant."
    ),
    "mit": "MIT is permissive: use it anywhere, keep the copyright and licence notice.",
    "bsd-3-clause": "BSD-3-Clause is permissive: keep the notice; do not use the authors' names to endorse.",
    "cc-by-4.0": "CC BY 4.0: use for any purpose, including commercially, with attribution.",
    "cc-by-nc-4.0": "CC BY-NC 4.0: attribution required and NO commercial use.",
    "cc-by-nc-sa-4.0": "CC BY-NC-SA 4.0: attribution, share-alike, and NO commercial use.",
    "openrail": "OpenRAIL: permissive with use-based restrictions listed in the licence; read them.",
    "other": "A custom licence: read the model's card before use.",
    "unknown": "The source does not state a licence. Treat the weights as all rights reserved until you know better.",
}


def explain(license_id: str | None) -> str:
    """What the licence ``license_id`` allows, in a sentence (``unknown`` when not stated)."""
    if not license_id:
        return EXPLAIN["unknown"]
    key = license_id.strip().lower()
    for k, text in EXPLAIN.items():
        if key.startswith(k):
            return text
    return f"{license_id}: no summary on file; read the licence text."


def is_copyleft(license_id: str | None) -> bool:
    """True for GPL-family licences (AGPL, GPL, LGPL)."""
    return license_id is not None and license_id.lower().startswith(("agpl", "gpl", "lgpl"))
