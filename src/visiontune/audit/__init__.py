"""Audit a classifier on a dataset: hardest mistakes, label errors, duplicates and leaks, outliers,
an embedding map in an HTML report, and an optional FiftyOne export; at the scale of millions of
images (streaming feature store, near-linear duplicate search).

    from visiontune.audit import audit
    result = audit("runs/pets-linear", data="data/pets", split="val")
    result.mistakes.head(), result.label_issues.head(), result.report_path
    result.similar("query.jpg", k=5)
"""

from visiontune.audit.core import AuditResult, VersionComparison, audit, compare_versions, print_summary
from visiontune.audit.duplicates import find_duplicates
from visiontune.audit.fiftyone_export import FiftyOneUnavailable, export_fiftyone
from visiontune.audit.label_issues import out_of_sample_probs, rank_label_issues
from visiontune.audit.similar import SimilarIndex
from visiontune.audit.store import FeatureStore, cache_root

__all__ = [
    "AuditResult",
    "FeatureStore",
    "FiftyOneUnavailable",
    "SimilarIndex",
    "VersionComparison",
    "audit",
    "cache_root",
    "compare_versions",
    "export_fiftyone",
    "find_duplicates",
    "out_of_sample_probs",
    "print_summary",
    "rank_label_issues",
]

from visiontune._verbs import make_verb  # noqa: E402 - `vt.audit(...)` calls the verb

make_verb(__name__)
