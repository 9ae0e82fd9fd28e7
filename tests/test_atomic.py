"""The one atomic-write helper every verb uses: old file or new file, never half of one."""

import os
import stat

import pytest

from visiontune._atomic import atomic_path, save_figure, write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "manifest.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["manifest.json"]


def test_the_temp_keeps_the_extension_and_the_file_gets_the_usual_permissions(tmp_path):
    target = tmp_path / "table.parquet"
    with atomic_path(target, fsync=False) as tmp:
        assert tmp.endswith(".parquet") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "wb").close()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_save_figure_writes_a_png_and_releases_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    plt.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
