"""Run configuration: first-use zoo stages, user.conf as LoadGen reads it, reference-harness flags."""

from __future__ import annotations

import re

import pytest

from common.paths import REPO
from models.registry import MODELS, TASKS


# --- first use: the stages a run serves from -------------------------------------------------------
def readme_names(variable: str) -> list[str]:
    """The values the README's flag table lists for a make variable (`MODEL`, `TASK`)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    row = re.search(rf"^\| `{variable}` \| `--\w+` \| (.*?) \|", readme, re.M)
    assert row, f"README has no flag-table row for {variable}"
    return re.findall(r"`([\w-]+)`", row.group(1))


def test_the_readme_lists_every_registered_model_and_task():
    assert readme_names("MODEL") == list(MODELS)
    assert readme_names("TASK") == list(TASKS)


@pytest.mark.parametrize("encoder", ["tiny", "e5-small"])
def test_every_readme_model_and_task_builds_the_stage_its_run_serves(encoder):
    """For each MODEL x TASK of the README, the last stage `build_for_run` builds is the folder the
    run's checkpoint lookup serves from, and every stage it depends on comes before it."""
    from models.recipe import stages_for_run

    for model in readme_names("MODEL"):
        spec = MODELS[model]
        for task in readme_names("TASK"):
            target = TASKS[task]
            plan = [s.folder for s in stages_for_run(model, task, encoder)]
            stage = spec.stage_dir(target.kind, target.name)
            served = f"{model}/{stage}" if stage else "encoder"
            assert plan[-1] == served, (model, task, plan)
            assert plan[0] == "encoder"
            assert (f"{model}/squad" in plan) == (spec.intermediate == "squad"), (model, task, plan)
            assert len(plan) == 1 + (spec.intermediate is not None) + (
                task in ("xnli", "pawsx", "tydiqa")
            )


def test_first_use_estimate_adds_the_measured_stage_times():
    from models.recipe import build_announcement, stages_for_run

    plan = stages_for_run("adapter-squad", "xnli", "e5-small")
    assert [(s.folder, s.minutes) for s in plan] == [
        ("encoder", 1.25),
        ("adapter-squad/squad", 5.0),
        ("adapter-squad/xnli", 4.8),
    ]
    line = build_announcement(plan, "adapter-squad/xnli (e5-small)")
    assert "building 3 zoo stage(s): encoder e5-small (~1.25 min), adapter-squad squad (~5 min)" in line
    assert "about 11 min on a quiet 2-core CPU" in line
    pawsx = build_announcement(stages_for_run("full", "pawsx", "e5-small")[1:], "full/pawsx")
    assert "full pawsx (not measured)" in pawsx and "about 0 min plus 1 unmeasured stage(s)" in pawsx


def test_a_retrieval_run_of_a_model_with_an_intermediate_stage_builds_it_on_first_use(
    tmp_path, monkeypatch, capsys
):
    """A fresh clone's `make run MODEL=full-squad TASK=bucc` built the encoder only, then stopped
    with "no checkpoint ... full-squad/squad". Here the runner's own preparation (what `harness run`
    does before LoadGen) on an empty zoo folder, with the test-sized recipe."""
    from harness.config import RunConfig
    from harness.runner import prepare
    from models import recipe
    from models.loaders import DONE

    monkeypatch.setitem(recipe.SIZES, "tiny", recipe.TINY_TEST)
    zoo = tmp_path / "zoo"
    cfg = RunConfig(model="full-squad", task="bucc", languages="zh", count=8, models_dir=str(zoo))
    work = prepare(cfg)
    try:
        assert work.served.checkpoint == zoo / "full-squad" / "squad"
        assert work.served.serving == "plain" and len(work.qsl.lengths) > 0
    finally:
        work.close()
    built = sorted(str(p.parent.relative_to(zoo)) for p in zoo.rglob(DONE))
    assert built == ["encoder", "full-squad/squad"]  # no target stage: BUCC trains nothing
    out = capsys.readouterr().out
    assert "first use of full-squad/bucc (tiny)" in out and "building 2 zoo stage(s)" in out
    # a second use builds nothing
    assert recipe.build_for_run("full-squad", "bucc", zoo, "tiny", recipe.TINY_TEST) == []


# --- flags of the reference harness ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (
            ["run", "--mlperf_conf", "build/mlperf.conf"],
            "--mlperf_conf is a flag of the MLCommons "
            "reference harness: use --user_conf here (LoadGen applies its built-in mlperf.conf itself",
        ),
        (
            ["run", "--max_examples", "100"],
            "--max_examples is a flag of the MLCommons reference harness: use --count here",
        ),
        (["run", "--quantized"], "use --dtype here"),
        (["run", "--network", "sut", "--port", "8000"], "use --executor here"),
        (
            [
                "compliance",
                "--scenario",
                "Offline",
                "--model",
                "full",
                "--task",
                "xnli",
                "--max_examples=5",
            ],
            "--max_examples is a flag of the MLCommons reference harness: use --count here",
        ),
        (
            ["run", "--user-conf", "x.conf"],
            "python -m harness run: unknown flag --user-conf (did you mean --user_conf?)",
        ),
        (["models", "--mlperf_conf", "x"], "python -m harness models: unknown flag --mlperf_conf"),
    ],
)
def test_a_reference_harness_flag_gets_one_error_line_naming_ours(capsys, argv, hint):
    from harness.cli import main

    assert main(argv) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: ") and hint in lines[0], lines
    assert captured.out == ""
