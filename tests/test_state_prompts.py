"""State prompts: the parser against a catalogue of messy answers, the frame schedule, the prompt."""

import pytest

from adapters.state_prompts import (StatePromptError, exactly, json_schema, messages, parse_schedule, parse_states,
                                    schedule, state_frames)

FOUR = ["a hand rests next to a closed tablet box", "the hand lifts one end of the box",
        "the hand lets go and the box falls", "the box lies flat on the table"]

CATALOGUE = {
    "json object": '{"states": ["%s", "%s", "%s", "%s"]}' % tuple(FOUR),
    "json list": '["%s", "%s", "%s", "%s"]' % tuple(FOUR),
    "code fence": 'Sure!\n```json\n{"states": ["%s", "%s", "%s", "%s"]}\n```\nHope this helps.' % tuple(FOUR),
    "stray text around json": 'Here you go: {"states": ["%s", "%s", "%s", "%s"]} -- done' % tuple(FOUR),
    "objects in the list": '{"states": [{"state": "%s"}, {"state": "%s"}, {"state": "%s"}, {"state": "%s"}]}' % tuple(FOUR),
    "other key": '{"steps": ["%s", "%s", "%s", "%s"]}' % tuple(FOUR),
    "newline inside a string": '{"states": ["%s", "the hand lifts\\none end of the box", "%s", "%s"]}' % (FOUR[0], FOUR[2], FOUR[3]),
    "numbered dots": "1. %s\n2. %s\n3. %s\n4. %s" % tuple(FOUR),
    "numbered parens": "Here are the states:\n1) %s\n2) %s\n3) %s\n4) %s\n" % tuple(FOUR),
    "bullets": "- %s\n* %s\n\u2022 %s\n- %s" % tuple(FOUR),
    "state labels": "State 1: %s\nState 2: %s\nState 3: %s\nState 4: %s" % tuple(FOUR),
    "quoted lines": '1. "%s"\n2. "%s"\n3. "%s"\n4. "%s"' % tuple(FOUR),
    "plain lines with lead-in": "The states are:\n%s\n%s\n%s\n%s" % tuple(FOUR),
    "blank lines between": "1. %s\n\n2. %s\n\n3. %s\n\n4. %s\n" % tuple(FOUR),
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_parser_catalogue(name):
    states = parse_states(CATALOGUE[name])
    want = list(FOUR)
    if name == "newline inside a string":
        want[1] = "the hand lifts one end of the box"
    assert states == want, name


def test_wrong_count_error_shows_the_answer():
    raw = "1. only one state"
    with pytest.raises(StatePromptError, match="1 states instead of 4.*only one state"):
        exactly(parse_states(raw), 4, raw)


def test_state_frames_and_schedule():
    assert state_frames(4, 16) == [0, 4, 8, 12]
    # Wan: spread over the 9 latent frames of 33 pixel frames, each on its latent frame's first pixel frame (1 + 4k)
    assert state_frames(4, 33, temporal_stride=4) == [0, 5, 17, 25]  # latent frames 0, 2, 5, 7 of 9
    assert state_frames(3, 17, temporal_stride=4) == [0, 5, 9]  # latent frames 0, 2, 3 of 5
    # as many states as latent frames: every latent frame gets one, none past the end
    assert state_frames(21, 81, temporal_stride=4) == [0] + [1 + 4 * k for k in range(20)]
    with pytest.raises(ValueError, match="do not fit"):
        state_frames(3, 5, temporal_stride=4)
    text = schedule(FOUR, 33, temporal_stride=4)
    assert text.splitlines()[0] == '"0": "a hand rests next to a closed tablet box",'
    assert parse_schedule(text) == list(zip([0, 5, 17, 25], FOUR))


def test_messages_and_schema():
    msgs = messages("lift one end of a tablet box, then let it drop", 4)
    assert msgs[0]["role"] == "system" and msgs[1]["content"][0] == {"type": "image"}
    assert "exactly 4" in msgs[1]["content"][1]["text"]
    schema = json_schema(4)
    assert schema["properties"]["states"]["minItems"] == schema["properties"]["states"]["maxItems"] == 4


@pytest.mark.parametrize("text,needle", [
    ('"0": "a",\n"0": "b"', "frame 0 twice"),  # json.loads alone would keep only the last
    ('"2": "a"', "starts at frame 2; it must start at 0"),
])
def test_schedules_are_checked_once_for_every_reader(text, needle):
    from adapters.state_prompts import check_schedule

    with pytest.raises(ValueError, match=needle):
        check_schedule(parse_schedule(text))


@pytest.mark.parametrize("text,needle", [
    ('"0": "closed", "0": "open"', 'line 1: the schedule gives frame 0 twice'),       # one line: refused, not merged
    ('"0": "closed",\n"0": "open"', r'line 2: the schedule gives frame 0 twice \(first on line 1\)'),
    ('"0": "closed", "4": ', "line 1: frame 4 has no state"),
    ('"0": "closed",\n"4": ', "line 2: frame 4 has no state"),
    ('"0": "closed",\n"4": ""', "line 2: frame 4 has no state"),
    ('"0": "closed",\n"999": "open"', "line 2: frame 999 is past the video's last frame 11 .* from 0 to 11"),
    ('"2": "closed"', "starts at frame 2; it must start at 0"),
    ('"0": "closed" "open"', "unexpected '\"open\"' after the state of frame 0"),
    ('"0": "closed\n', "opens a quote that does not close"),
])
def test_one_schedule_parser_is_strict_on_structure(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_schedule(text, frames=12)


@pytest.mark.parametrize("text", [
    '"0": "closed", "4": "open"',
    '"0": "closed",\n"4": "open",\n',
    '{"0": "closed", "4": "open"}',
    '\ufeff{\n  "0": "closed",\n  "4": "open"\n}',
    '0: closed\n4: open',
    '"4": "open"\n"0": "closed"',
])
def test_one_schedule_parser_is_tolerant_on_form(text):
    assert parse_schedule(text, frames=12) == [(0, "closed"), (4, "open")]


def test_states_file_that_is_not_utf8_names_the_file(tmp_path):
    from adapters.clip_folder import states_for

    video = tmp_path / "corn.mp4"
    (tmp_path / "corn.states.txt").write_bytes('"0": "ma\u00efs"'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"corn.states.txt is not UTF-8 text \(byte 0xef at position 8\)"):
        states_for(str(video))
