"""The exercise sections: built from the saved JSON, honest about missing files, and the question map resolves."""

from __future__ import annotations

import json
import re
import shutil

from chargen.report import Numbers, untraced_numbers
from chargen.report import exercises as rx
from chargen.paths import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "docs" / "report" / "results" / "exercises"


def test_every_section_says_how_to_make_a_missing_results_file(tmp_path):
    for section in rx.SECTIONS:
        text = section(tmp_path)
        assert text.startswith("## ")
    for name in ("word2vec.json", "tutorial.json", "optimisers.json", "hand_lstm.json", "engines.json"):
        assert f"No `{name}` yet" in rx.exercises_markdown(tmp_path)


def test_sections_read_their_numbers_from_the_results(tmp_path):
    shutil.copytree(RESULTS, tmp_path, dirs_exist_ok=True)
    doc = json.loads((tmp_path / "hand_lstm.json").read_text())
    doc["table"][0]["C"] = -0.123456
    (tmp_path / "hand_lstm.json").write_text(json.dumps(doc))
    assert "-0.12346" in rx.hand_lstm_section(tmp_path)
    assert "-0.12346" not in rx.hand_lstm_section(RESULTS)


def test_committed_results_render_without_placeholders():
    text = rx.exercises_markdown(RESULTS)
    assert "yet: make it with" not in text, [line for line in text.splitlines() if "yet: make it" in line]


def test_question_map_points_at_sections_that_exist():
    own = {rx._anchor(m.group(1)) for m in re.finditer(r"^## (.+)$", rx.exercises_markdown(RESULTS), re.M)}
    # the report's own sections, wherever the report's code lives (a module now, a package after the refactor)
    sources = [PROJECT_ROOT / "chargen" / "report.py", *sorted((PROJECT_ROOT / "chargen" / "report").glob("*.py"))]
    report_src = "".join(p.read_text() for p in sources if p.exists())
    theirs = {rx._anchor(t) for t in re.findall(r"## ([^\n\"{]+)", report_src)}
    for q in rx.question_map():
        assert q["anchor"] in own | theirs, q


def test_every_number_an_exercise_section_prints_goes_through_the_formatter():
    n = Numbers()
    assert untraced_numbers(rx.question_map_section(n), n.emitted) == []
    assert untraced_numbers(rx.question_map_section(n), set()) == [q["number"] for q in rx.question_map()]  # labels
    for section in rx.SECTIONS:  # one section at a time, so no other section's numbers can cover for it
        n = Numbers()
        text = section(RESULTS, n)
        assert untraced_numbers(text, n.emitted) == [], section.__name__


def test_the_exercises_command_writes_into_its_own_folder_unless_told(tmp_path, monkeypatch):
    from chargen.experiments import exercises as ex

    assert not ex.DEFAULT_OUT.is_absolute() and ex.DEFAULT_OUT.parts[0] == "runs"  # never docs/report/results
    monkeypatch.chdir(tmp_path)
    ex.main(["--only", "lstm_params"])
    assert sorted(p.name for p in (tmp_path / "runs" / "exercises").iterdir()) == ["lstm_params.json"]
    ex.main(["--only", "hand_lstm", "--out", str(tmp_path / "mine")])
    assert (tmp_path / "mine" / "hand_lstm.json").is_file()
