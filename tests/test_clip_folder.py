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


def _schedule(text):
    from adapters.state_prompts import parse_schedule

    return parse_schedule(text)


def test_states_sidecar(tmp_path):
    from adapters.clip_folder import states_for

    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "a.states.txt").write_bytes("\ufeff\n hand holds corn \n".encode("utf-8"))  # Notepad's BOM
    (tmp_path / "b.mp4").write_bytes(b"")
    (tmp_path / "b.states.txt").write_text(" \n", encoding="utf-8")
    assert states_for(str(tmp_path / "a.mp4")) == "hand holds corn"
    assert states_for(str(tmp_path / "b.mp4")) == ""  # there, but empty: an error for the node to report
    assert states_for(str(tmp_path / "c.mp4")) is None


def test_plain_state_lines_spread_over_the_video_then_cut_to_each_clip():
    from adapters.clip_folder import clip_schedule, video_states

    text = "a hand holds the corn\n\n  the corn   is above the pot\nthe corn is in the pot\n"
    # 3 states over a 9-frame video: 0, 3, 6 (as MLLM State Prompt places them)
    entries = video_states(text, 9)
    assert entries == [(0, "a hand holds the corn"), (3, "the corn is above the pot"), (6, "the corn is in the pot")]
    assert _schedule(clip_schedule(entries, 0, 9, 1)) == entries
    # over a 90-frame video: 0, 30, 60; a clip of 5 frames at stride 10 from frame 25 sees 25 35 45 55 65
    entries = video_states(text, 90)
    assert [f for f, _ in entries] == [0, 30, 60]
    assert _schedule(clip_schedule(entries, 25, 5, 10)) == [(0, "a hand holds the corn"),
                                                              (1, "the corn is above the pot"),
                                                              (4, "the corn is in the pot")]


@pytest.mark.parametrize("text", [
    '"0": "hold",\n"10": "lift",\n"21": "drop",',          # what MLLM State Prompt writes
    '{\n  "0": "hold",\n  "10": "lift",\n  "21": "drop"\n}',  # a JSON object
    "0: hold\n10: lift\n21: drop",                          # by hand, unquoted
    '"10": "lift"\n0: hold\n"21": drop',                    # mixed, out of order
])
def test_video_schedule_is_read_and_cut_to_the_clip_window(text):
    from adapters.clip_folder import clip_schedule, video_states

    entries = video_states(text, 40)
    assert entries == [(0, "hold"), (10, "lift"), (21, "drop")]
    # clip of 6 frames at stride 2 from frame 6: video frames 6 8 10 12 14 16 -> hold hold lift lift lift lift
    assert _schedule(clip_schedule(entries, 6, 6, 2)) == [(0, "hold"), (2, "lift")]
    # from frame 11 at stride 3: 11 14 17 20 23 -> lift lift lift lift drop (frame 21 falls between 20 and 23)
    assert _schedule(clip_schedule(entries, 11, 5, 3)) == [(0, "lift"), (4, "drop")]
    # a window past the last entry keeps the last state
    assert _schedule(clip_schedule(entries, 30, 3, 1)) == [(0, "drop")]


@pytest.mark.parametrize("text,needle", [
    ('"1": "a",\n"5": "b"', "starts at frame 1; it must start at 0"),
    ("0: a\n0: b", "frame 0 twice"),
    ('"0": "a",\n"0": "b"', "frame 0 twice"),
    ("0: a\nthen b", "is not \"frame\": \"state\""),
    ("a\nb\nc", "do not fit"),
    ('["a", "b"]', "looks like JSON"),
    ('"a hand"\n"the pot"', "looks like JSON"),
    ("", "empty"),
])
def test_bad_states_files_say_why(text, needle):
    from adapters.clip_folder import video_states

    with pytest.raises(ValueError, match=needle):
        video_states(text, 2)
