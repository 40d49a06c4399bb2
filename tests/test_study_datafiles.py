"""The study's data files (research/datafiles.py): presets in research/grids/*.toml and planning rates in
research/rates.toml, each checked against a schema that names the file and the bad key."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from research import datafiles, study


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    study.configure_parser(p)
    return p


def test_the_committed_rates_are_the_measured_figures():
    peak, rates = datafiles.load_rates()
    assert peak == datafiles.PeakSearch((0.06, 0.30), 3, 60.0, 120.0)
    e5 = rates["e5-small"]
    assert e5.start_s == 5.0
    assert e5.accuracy_s["tydiqa"] == 285.0 and e5.offline_stretch == {"xnli": 1.45, "tydiqa": 1.8}
    assert e5.offline_target("xnli", "onnxruntime-int8") == 240.0
    assert e5.offline_target("tydiqa", "onnxruntime") == 33.0
    assert e5.offline_target("bucc", "pytorch") == 1000.0  # no per-backend figure: the task's
    assert rates["tiny"].offline_target("xnli", "pytorch") == 1000.0
    assert rates["tiny"].offline_qps_by_backend == {}


def test_presets_are_the_study_flags_with_repository_paths():
    assert datafiles.preset_names() == [
        "e5-small",
        "e5-small-curve",
        "e5-small-quick",
        "e5-small-v2",
        "e5-small-xnli-seeds",
    ]
    flags = datafiles.load_preset("e5-small", parser())
    assert (
        flags["runs_dir"] == REPO / "build" / "study-e5"
        and flags["out"] == REPO / "reports" / "study-e5"
    )
    assert flags["seeds"] == [0, 1, 2] and flags["rounds"] == 5 and flags["server_common"] == 0.2
    assert flags["backends"] == ["pytorch", "onnxruntime", "onnxruntime-int8"]
    args = parser().parse_args(["--preset", "e5-small-quick", "--rounds", "2"])  # later flags win
    assert args.rounds == 2 and args.languages == ["en", "de", "ar", "sw", "zh"]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            'tasks = ["xnli"]\ntaskz = ["xnli"]\n',
            "bad.toml: unknown key 'taskz' (not a flag of the study)",
        ),
        ('preset = "e5-small"\n', "bad.toml: unknown key 'preset' (not a flag of the study)"),
        ('rounds = "five"\n', "bad.toml: key 'rounds': bad value 'five'"),
        ('server_qps = "fastest"\n', "bad.toml: key 'server_qps': 'fastest' is not one of"),
        ("rounds = \n", "bad.toml: "),
    ],
)
def test_a_bad_preset_names_the_file_and_the_key(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(datafiles.DataFileError) as err:
        datafiles.load_preset("bad", parser(), tmp_path)
    assert str(err.value).startswith(str(tmp_path / message.split(": ", 1)[0]))
    assert message.split(": ", 1)[1] in str(err.value)


def test_a_bad_preset_on_the_command_line_is_one_error_line_and_exit_3(tmp_path):
    grid = tmp_path / "bad.toml"
    grid.write_text('tasks = ["xnli"]\ntaskz = ["xnli"]\n')
    code = (
        "import sys; from pathlib import Path; from research import datafiles; "
        f"datafiles.GRIDS = Path({str(tmp_path)!r}); from research.cli import main; "
        "sys.exit(main(['study', '--preset', 'bad', '--plan']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == BAD_INPUT
    assert proc.stderr.strip() == f"error: {grid}: unknown key 'taskz' (not a flag of the study)"
    assert proc.stdout == ""


RATES = """
[peak_search]
measured = "today"
command = "python -m research study --plan"
bounds = [0.1, 0.3]
trials = 3
trial_s = 60.0
longer_s = 120.0

[encoders.e5-small]
measured = "today"
command = "python -m research study --plan"
start_s = 5.0
accuracy_s = { xnli = 191.0 }
offline_qps = { xnli = 250.0 }
"""


@pytest.mark.parametrize(
    "old, new, message",
    [
        (None, None, None),
        (
            'command = "python -m research study --plan"\nbounds',
            "bounds",
            "missing key 'peak_search.command'",
        ),
        (
            "start_s = 5.0",
            'start_s = "5 s"',
            "key 'encoders.e5-small.start_s' must be a number, not '5 s'",
        ),
        (
            "trials = 3",
            "trials = 3\nsteps = 4",
            "unknown key 'peak_search.steps' (known: measured, command,",
        ),
        ("xnli = 191.0", 'xnli = "slow"', "key 'encoders.e5-small.accuracy_s.xnli' must be a number"),
        ("[0.1, 0.3]", "[0.3, 0.1]", "key 'peak_search.bounds' must be [low, high] with 0 < low < high"),
        (
            "offline_qps = { xnli = 250.0 }",
            "offline_qps = { xnli = 250.0 }\noffline_stretch = [1.4]",
            "key 'encoders.e5-small.offline_stretch' must be a table",
        ),
    ],
)
def test_rates_are_checked_against_their_schema(tmp_path, old, new, message):
    path = tmp_path / "rates.toml"
    path.write_text(RATES if old is None else RATES.replace(old, new, 1))
    if message is None:
        peak, rates = datafiles.load_rates(path)
        assert (
            peak.bounds == (0.1, 0.3)
            and rates["e5-small"].offline_target("xnli", "onnxruntime") == 250.0
        )
        return
    with pytest.raises(datafiles.DataFileError) as err:
        datafiles.load_rates(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_the_search_settings_of_a_cell_come_from_the_rates_file(tmp_path):
    """A find_peak cell's marker keeps the search's settings: the rates file's, as before it moved."""
    cell = study.Cell("full", "xnli", "pytorch", "Server", "performance")
    assert cell.settings_key(study.StudySettings(runs_dir=tmp_path))["peak_search"][:3] == [
        0.06,
        0.30,
        3,
    ]
    assert cell.duration_s(study.StudySettings(runs_dir=tmp_path, duration_s=5.0)) == 60.0
    assert Path(datafiles.RATES_FILE) == REPO / "research" / "rates.toml"
