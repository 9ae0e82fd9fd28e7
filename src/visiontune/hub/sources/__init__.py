"""One module per front door. Each exposes ``build(mid, opts) -> Pretrained``."""
