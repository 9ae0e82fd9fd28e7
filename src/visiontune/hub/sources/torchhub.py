"""torch.hub: ``hub:owner/repo:entrypoint[@ref]``.

torch.hub runs the repository's own Python code (``hubconf.py``), so it is refused unless the
caller passes ``trust_remote_code=True`` or the repo is already in torch.hub's trusted list. A repo
already downloaded into ``$TORCH_HOME/hub`` is used from there with no network.
"""

from __future__ import annotations

import glob
from pathlib import Path

from visiontune.errors import ModelIdError, VisiontuneError, WeightsNotCachedError
from visiontune.hub import offline
from visiontune.hub.card import Card
from visiontune.hub.ids import ModelId
from visiontune.hub.options import LoadOptions
from visiontune.hub.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from visiontune.hub.pretrained import Pretrained
from visiontune.hub.registry import Source, register_source, split_weights
from visiontune.hub.sources._common import finish, glob_pattern, load_local_weights
from visiontune.hub.trust import require_code_trust


def _hub_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir())


def cached_repo(owner: str, repo: str, ref: str | None) -> Path | None:
    """The cached torch.hub checkout of ``owner/repo`` at ``ref`` (None when not cached)."""
    d = _hub_dir()
    if ref:
        p = d / f"{owner}_{repo}_{ref.replace('/', '_')}"
        return p if (p / "hubconf.py").is_file() else None
    hits = sorted(glob.glob(str(d / f"{owner}_{repo}_*" / "hubconf.py")))
    for pref in ("main", "master"):  # torch.hub's default branches
        for h in hits:
            if Path(h).parent.name.endswith(f"_{pref}"):
                return Path(h).parent
    return Path(hits[0]).parent if hits else None


def _trusted(owner: str, repo: str) -> bool:
    f = _hub_dir() / "trusted_list"
    if not f.is_file():
        return False
    return f"{owner}_{repo}" in f.read_text().split()


def build(mid: ModelId, opts: LoadOptions) -> Pretrained:
    """Load ``torchhub:<owner>/<repo>:<entry>`` from the cached checkout as a `Pretrained`."""
    import torch.hub

    repo_part, entry = mid.name.split(":")
    if "/" not in repo_part:
        raise VisiontuneError(f"torch.hub id needs owner/repo, got {repo_part!r}")
    owner, repo = repo_part.split("/", 1)
    ref = mid.weights
    require_code_trust(
        f"hub:{owner}/{repo} (its hubconf.py)", trust_remote_code=opts.trust_remote_code, trusted=_trusted(owner, repo)
    )
    kwargs = dict(opts.model_kwargs)
    if "pretrained" not in kwargs and "weights" not in kwargs and not opts.weights:
        kwargs["pretrained"] = opts.pretrained
    local = cached_repo(owner, repo, ref)
    if local is not None:
        model = torch.hub.load(str(local), entry, source="local", **kwargs)
    else:
        if not offline.can_reach("github.com"):
            want = _hub_dir() / f"{owner}_{repo}_{ref or 'main'}"
            raise WeightsNotCachedError(
                f"torch.hub repo {owner}/{repo} is not in the cache and github.com cannot be reached. "
                f"Put a checkout of the repo (with hubconf.py) at {want}, or set TORCH_HOME to a cache that has it.",
                filename="hubconf.py",
                directory=str(want),
            )
        model = torch.hub.load(f"{owner}/{repo}" + (f":{ref}" if ref else ""), entry, trust_repo=True, **kwargs)
        local = cached_repo(owner, repo, ref)
    load_report, sha = None, None
    if opts.weights:
        load_report, sha = load_local_weights(model, opts, source="torch.hub")

    cfg = getattr(model, "pretrained_cfg", None)
    card = Card(
        source="hub",
        name=f"{owner}/{repo}:{entry}",
        model_id=str(mid),
        weights=ref,
        pretrained=bool(opts.weights) or bool(kwargs.get("pretrained") or kwargs.get("weights")),
        license_code=_repo_license(local),
        weights_file=str(opts.weights) if opts.weights else None,
        weights_sha256=sha,
    )
    if isinstance(cfg, dict) and cfg.get("input_size"):
        from visiontune.hub.sources.timm_src import preprocess_from_cfg

        pre, fields = preprocess_from_cfg(cfg)
        for k, v in fields.items():
            setattr(card, k, v)
        card.preprocess_source = "the model's timm pretrained_cfg"
    else:
        pre = Preprocess(resize=256, crop=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD)
        card.preprocess_source = (
            "assumed ImageNet defaults: this torch.hub entrypoint publishes no preprocessing; check the repo's README"
        )
        card.license_notes.append(
            "Preprocessing not published by the source: verify it with `visiontune check-preprocess`."
        )
    try:
        from visiontune.hub.heads import find_head

        _, h = find_head(model)
        card.num_classes = getattr(h, "out_features", None)
    except Exception:
        pass
    card = finish(model, card, opts)
    return Pretrained(model, card, pre, load_report=load_report)


def _repo_license(local: Path | None) -> str | None:
    if local is None:
        return None
    for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"):
        f = local / name
        if f.is_file():
            head = f.read_text(errors="replace")[:400].lower()
            for key, spdx in (
                ("affero", "AGPL-3.0"),
                ("apache license", "Apache-2.0"),
                ("mit license", "MIT"),
                ("bsd", "BSD"),
                ("gnu general public license", "GPL"),
            ):
                if key in head:
                    return spdx
            return f"see {f}"
    return None


def entrypoints(hubconf: Path) -> list[str]:
    """The public functions a ``hubconf.py`` defines, read with ``ast`` (the file is not run)."""
    import ast

    try:
        tree = ast.parse(hubconf.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError):
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]


def list_cached(pattern: str | None = None) -> list[dict]:
    """torch.hub repositories already in ``$TORCH_HOME/hub`` (folders ``owner_repo_ref`` holding a
    hubconf.py), one row per entrypoint. Nothing is executed: entrypoints are read from the source."""
    import fnmatch

    d = _hub_dir()
    pat = glob_pattern(pattern)
    rows = []
    for conf in sorted(d.glob("*_*_*/hubconf.py")) if d.is_dir() else []:
        owner, _, rest = conf.parent.name.partition("_")  # GitHub owners cannot contain "_"
        repo, _, ref = rest.rpartition("_")  # refs with "_" are ambiguous on disk; the common ones are not
        for entry in entrypoints(conf):
            mid = f"hub:{owner}/{repo}:{entry}"
            if fnmatch.fnmatch(mid[4:], pat):
                rows.append(
                    {
                        "id": mid + (f"@{ref}" if ref not in ("main", "master") else ""),
                        "task": "-",
                        "weights": [ref],
                        "cached": True,
                    }
                )
    return rows


@register_source
class TorchHubSource(Source):
    """``hub:owner/repo:entrypoint[@ref]``: torch.hub (runs the repo's hubconf.py: needs trust_remote_code)."""

    name = "hub"
    aliases = ("torchhub",)
    listable = True

    def parse(self, rest: str, text: str) -> tuple[str, str | None]:
        """``(owner/repo:entry, weights)`` of an id; a ModelIdError names the expected form."""
        name, weights = split_weights(rest, text, self.name)
        if name.count(":") != 1:
            raise ModelIdError(
                f"torch.hub ids are 'hub:owner/repo:entrypoint[@ref]', got {text!r} (e.g. 'hub:pytorch/vision:resnet18')"
            )
        return name, weights

    build = staticmethod(build)

    def list_models(self, pattern: str | None, pretrained: bool) -> list[dict]:
        """Cached torch.hub entry points matching ``pattern``."""
        return list_cached(pattern)
