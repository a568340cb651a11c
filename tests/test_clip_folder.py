import pytest

from adapters.clip_folder import caption_for, clip_windows


@pytest.mark.parametrize("n,frames,stride,per", [(100, 17, 1, 3), (33, 17, 2, 1), (50, 5, 3, 10), (17, 17, 1, 4),
                                                 (200, 9, 4, 2)])
def test_windows_fit_do_not_overlap_and_spread(n, frames, stride, per):
    span = (frames - 1) * stride + 1
    starts = clip_windows(n, frames, stride, per)
    assert len(starts) == min(per, n // span)
    assert starts[0] == 0
    for a, b in zip(starts, starts[1:]):
        assert b - a >= span  # no frame is used twice
    assert starts[-1] + span <= n  # every window fits
    if len(starts) > 1:
        assert starts[-1] + span == n  # spread to the end of the video


def test_too_short_video_gives_no_window():
    assert clip_windows(16, 17, 1, 1) == []
    assert clip_windows(32, 17, 2, 1) == []
    assert clip_windows(33, 17, 2, 1) == [0]


def test_caption_sidecar_and_default(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.txt").write_text("  a watercolor\nfox  running \n", encoding="utf-8")
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "c.mp4").write_bytes(b"")
    (tmp_path / "c.txt").write_text("   \n", encoding="utf-8")
    assert caption_for(str(tmp_path / "a.mp4"), "x") == "a watercolor fox running"
    assert caption_for(str(tmp_path / "b.mp4"), "default") == "default"
    assert caption_for(str(tmp_path / "c.mp4"), "default") == "default"  # empty caption file
