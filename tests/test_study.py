"""The efficiency study: report collection, resumable cells (all CPU, small)."""

from __future__ import annotations

import csv
import gzip
import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.paths import REPO
from research import collect, report, study
from research.accuracy import accuracy_study
from research.bootstrap import UnitScores
from research.cli import main as research_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(
    root: Path,
    backend: str,
    dtype: str,
    model: str,
    task: str,
    scenario: str,
    mode: str,
    results: dict,
    accuracy: dict | None = None,
    kind: str = "tiny",
) -> Path:
    folder = root / f"{backend}-{dtype}" / model / task / scenario / mode
    folder.mkdir(parents=True)
    base = {"result_valid": True, "scenario": scenario, "mode": mode}
    (folder / "results.json").write_text(json.dumps({**base, **results}))
    cfg = {
        "model": model,
        "task": task,
        "scenario": scenario,
        "mode": mode,
        "backend": backend,
        "backend_options": {"dtype": dtype},
        "encoder": "tiny",
        "model_kind": kind,
        "duration_s": 3,
    }
    (folder / "run_config.json").write_text(json.dumps(cfg))
    if accuracy is not None:
        (folder / "accuracy.json").write_text(json.dumps(accuracy))
    return folder


@pytest.fixture()
def synthetic_tree(tmp_path):
    """Two models x two backends on xnli: Offline, SingleStream, two Server loads, accuracy."""
    root = tmp_path / "runs"
    sps = {
        ("full", "onnxruntime", "fp32"): 400.0,
        ("full", "onnxruntime", "int8"): 800.0,
        ("adapter", "onnxruntime", "fp32"): 380.0,
        ("adapter", "onnxruntime", "int8"): 700.0,
    }
    for (model, backend, dtype), value in sps.items():
        _write_run(
            root,
            backend,
            dtype,
            model,
            "xnli",
            "Offline",
            "performance",
            {"samples_per_second": value, "latency_ns": {"p90": 1e9, "p99": 2e9}},
        )
        _write_run(
            root,
            backend,
            dtype,
            model,
            "xnli",
            "SingleStream",
            "performance",
            {"latency_ns": {"p50": 2e6, "p90": 3e6, "p99": 4.5e6}, "early_stopping_latency_ns": 3.1e6},
        )
        for k, frac in enumerate((0.5, 0.9)):
            folder = _write_run(
                root / f"q{k}",
                backend,
                dtype,
                model,
                "xnli",
                "Server",
                "performance",
                {
                    "target_qps": frac * value,
                    "completed_qps": frac * value,
                    "latency_ns": {"p99": (10 + 40 * k) * 1e6},
                },
            )
            if k == 1 and dtype == "int8":  # the high load fails on int8: the table keeps the valid one
                res = json.loads((folder / "results.json").read_text())
                (folder / "results.json").write_text(json.dumps({**res, "result_valid": False}))
        drop = 0.02 if dtype == "int8" else 0.0
        _write_run(
            root,
            backend,
            dtype,
            model,
            "xnli",
            "Offline",
            "accuracy",
            {},
            {
                "accuracy": 70.0 - 100 * drop,
                "per_language": {"en": {"accuracy": 80.0 - 100 * drop}, "de": 60.0},
            },
        )
    return root


def test_a_report_holds_the_runs_of_its_scope_only(synthetic_tree, tmp_path, monkeypatch):
    """Presets share a runs_dir (the second design's evening part and the whole of it): a study's
    report reads only its plan's models and tasks, so another preset's cells never enter its tables
    or its Holm family. `research study` passes its plan's (models, tasks)."""
    everything = report.write_report(synthetic_tree, tmp_path / "all")
    scoped = report.write_report(synthetic_tree, tmp_path / "full", scope=({"full"}, {"xnli"}))
    models = [pd.read_csv(w["csv"])["model"].tolist() for w in (everything, scoped)]
    assert sorted(set(models[0])) == ["adapter", "full"] and set(models[1]) == {"full"}
    assert len(models[1]) == 2  # full on its two backend variants
    other_task = report.write_report(synthetic_tree, tmp_path / "none", scope=({"full"}, {"tydiqa"}))
    assert pd.read_csv(other_task["csv"]).empty
    seen = {}
    monkeypatch.setattr(report, "write_report", lambda *a: seen.setdefault("scope", a[-1]) and {})
    argv = ["study", "--models", "full,lora", "--tasks", "xnli,tatoeba", "--backends", "pytorch"]
    assert research_main([*argv, "--runs_dir", str(tmp_path / "r"), "--report_only"]) == 0
    assert seen["scope"] == ({"full", "lora"}, {"xnli", "tatoeba"})


def test_report_table_equals_inputs(synthetic_tree, tmp_path):
    out = tmp_path / "reports"
    written = report.write_report(synthetic_tree, out)
    table = collect.variant_rows(collect.collect_runs(synthetic_tree))
    rows = {(r["model"], r["backend"]): r for r in collect.records(table)}
    assert len(rows) == 4
    full_int8 = rows[("full", "onnxruntime-int8")]
    assert full_int8["offline_samples_per_s"] == 800.0
    assert full_int8["singlestream_p90_ms"] == pytest.approx(3.1)  # early-stopping p90 preferred
    assert full_int8["singlestream_p99_ms"] == pytest.approx(4.5)
    assert full_int8["server_target_qps"] == pytest.approx(400.0)  # 0.9 x 800 was INVALID
    assert full_int8["server_p99_ms"] == pytest.approx(10.0)
    assert full_int8["server_invalid_above_qps"] == pytest.approx(720.0)  # the peak lies in [400, 720)
    assert rows[("full", "onnxruntime")]["server_invalid_above_qps"] is None  # nothing INVALID above
    assert rows[("full", "onnxruntime")]["server_target_qps"] == pytest.approx(360.0)
    assert full_int8["metric"] == "accuracy" and full_int8["metric_value"] == pytest.approx(68.0)

    with open(written["csv"]) as f:
        csv_rows = list(csv.DictReader(f))
    assert tuple(csv_rows[0].keys()) == collect.VARIANT_COLUMNS
    by_key = {(r["model"], r["backend"]): r for r in csv_rows}
    assert float(by_key[("adapter", "onnxruntime")]["offline_samples_per_s"]) == 380.0
    with open(written["runs_csv"]) as f:
        run_rows = list(csv.DictReader(f))
    assert len(run_rows) == 4 * 5  # every run folder is one row
    # relative to the runs root, so the committed csv holds no path of this machine
    assert all((synthetic_tree / r["path"] / "results.json").is_file() for r in run_rows)
    assert not any(r["path"].startswith("/") for r in run_rows)

    md = written["md"].read_text()
    assert "| adapter | xnli | onnxruntime | 380.0 |" in md
    assert "| adapter | xnli | onnxruntime | 0.950 | +5.0 |" in md  # 380 / 400
    assert "| full | 0 | onnxruntime | en | 80.00 | 78.00 | -2.00 |" in md  # int8 per-language change
    assert "| xnli | onnxruntime-int8 | full | yes | 400.0 | 720.0 | 10.00 |" in md  # the search
    assert "| xnli | onnxruntime | full | yes | 360.0 | - | 50.00 |" in md
    assert "| Server | performance | 8 | 1 | 1 | 3 |" in md  # the runs read: 4 variants x 2 loads
    assert "## Answer" not in md and "Caveats" not in md  # tables only: the words are people's
    for name in ("throughput", "latency", "accuracy_vs_throughput", "server_latency"):
        png = written[name].read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
        assert f"![{name}.png]({name}.png)" in md  # every figure written is linked


def test_report_links_only_the_figures_it_wrote(tmp_path):
    written = report.write_report(tmp_path / "nothing", tmp_path / "out", command="python -m x")
    md = written["md"].read_text()
    assert "Command: `python -m x`" in md and "Machine: " in md and "![" not in md


def test_report_of_empty_tree_writes_table_without_plots(tmp_path):
    written = report.write_report(tmp_path / "nothing", tmp_path / "out")
    assert set(written) == {"csv", "runs_csv", "md"}
    assert written["csv"].read_text().startswith("model,task,backend")


def test_int8_deltas_use_pytorch_fp32_when_onnxruntime_fp32_has_no_accuracy_run(tmp_path):
    """The study's default accuracy backends (pytorch, onnxruntime-int8) still give the int8 table."""
    root = tmp_path / "runs"
    acc = {
        ("full", "pytorch", "fp32"): 50.0,
        ("full", "onnxruntime", "int8"): 47.5,
        ("adapter", "pytorch", "fp32"): 10.0,
        ("adapter", "onnxruntime", "fp32"): 44.0,
        ("adapter", "onnxruntime", "int8"): 45.0,
    }
    for (model, backend, dtype), en in acc.items():
        _write_run(
            root,
            backend,
            dtype,
            model,
            "xnli",
            "Offline",
            "accuracy",
            {},
            {"accuracy": en, "per_language": {"en": en}},
        )
    deltas = collect.records(collect.int8_language_deltas(collect.collect_runs(root)))
    assert deltas == [  # adapter: ONNX Runtime fp32 preferred over its (different) PyTorch figure
        {
            "model": "adapter",
            "seed": 0,
            "reference": "onnxruntime",
            "language": "en",
            "fp32": 44.0,
            "int8": 45.0,
            "delta": 1.0,
        },
        {
            "model": "full",
            "seed": 0,
            "reference": "pytorch",
            "language": "en",
            "fp32": 50.0,
            "int8": 47.5,
            "delta": -2.5,
        },
    ]
    md = report.write_report(root, tmp_path / "out")["md"].read_text()
    assert "| model | seed | reference | language | fp32 | int8 | delta |" in md
    assert "| full | 0 | pytorch | en | 50.00 | 47.50 | -2.50 |" in md
    assert "| adapter | 0 | onnxruntime | en | 44.00 | 45.00 | +1.00 |" in md
    assert "Mean change over models and languages: -0.75." in md


def test_int8_deltas_pair_the_int8_run_with_the_fp32_run_of_the_same_seed(tmp_path):
    """The committed study ran `full` on PyTorch with seeds 0, 1 and 2 and int8 with seed 0 only: the
    int8 change must be taken against seed 0's fp32 run, not whichever seed was collected last."""
    runs = [
        _acc_run("full", "pytorch", {"en": 62.0, "de": 50.0}),
        _acc_run("full", "onnxruntime-int8", {"en": 61.0, "de": 48.5}),
        _acc_run("full", "pytorch", {"en": 64.0, "de": 56.0}, seed=2),  # collected after seed 0
        _acc_run("adapter", "pytorch", {"en": 40.0, "de": 30.0}, seed=1),
        _acc_run("adapter", "onnxruntime-int8", {"en": 39.0, "de": 30.5}, seed=1),
        _acc_run("adapter", "pytorch", {"en": 45.0, "de": 35.0}),
    ]
    deltas = collect.int8_language_deltas(runs)
    got = list(deltas[["model", "seed", "language", "fp32", "int8", "delta"]].itertuples(index=False))
    assert got == [
        ("adapter", 1, "de", 30.0, 30.5, 0.5),
        ("adapter", 1, "en", 40.0, 39.0, -1.0),
        ("full", 0, "de", 50.0, 48.5, -1.5),
        ("full", 0, "en", 62.0, 61.0, -1.0),
    ]
    md = report.markdown(collect.frame(runs), collect.variant_rows(runs), None, device=MACHINE)
    assert "| full | 0 | pytorch | en | 62.00 | 61.00 | -1.00 |" in md
    assert "Mean change over models and languages: -0.75." in md  # (0.5 - 1 - 1.5 - 1) / 4


def _row(
    model: str,
    backend: str,
    sps: float | None = None,
    p90: float | None = None,
    value: float | None = None,
    task: str = "xnli",
    metric: str = "accuracy",
    kind: str = "tiny",
) -> dict:
    row = dict.fromkeys(collect.VARIANT_COLUMNS)
    row.update(
        model=model,
        task=task,
        backend=backend,
        model_kind=kind,
        offline_samples_per_s=sps,
        singlestream_p90_ms=p90,
        metric=metric if value is not None else None,
        metric_value=value,
    )
    return row


def _acc_run(model: str, backend: str, per_language: dict, seed: int = 0) -> collect.Run:
    return collect.Run(
        path="",
        model=model,
        task="xnli",
        scenario="Offline",
        mode="accuracy",
        backend=backend,
        per_language=per_language,
        seed=seed,
    )


MACHINE = {"cpu_model": "AMD EPYC", "cpu_cores": 2, "memory_gib": 23.5}


def test_the_report_tables_its_ratios_searches_and_same_graph_check():
    """The variant view and its tables: Offline ratios to full, the searches' brackets, and the
    same-graph check of the interleaved rounds (per-round cost and Student's t interval)."""
    rows = [
        _row("full", "pytorch", sps=500.0, p90=4.0, value=34.0),
        _row("adapter", "pytorch", sps=455.0, value=33.5),  # 0.91x
        _row("lora-squad", "pytorch", sps=510.0),  # 1.02x
    ]
    rows[0].update(server_target_qps=12.6, server_valid=True, server_invalid_above_qps=15.0)
    rows[1].update(server_target_qps=9.0, server_valid=False)  # no VALID trial: the lowest tried
    full = [100.0, 80.0, 120.0]
    offline = dict(task="xnli", scenario="Offline", mode="performance", backend="pytorch")
    runs = [
        collect.Run(path="", model=m, samples_per_second=v * f, round=k, duration_s=5.0, **offline)
        for m, fs in (("full", (1.0, 1.0, 1.0)), ("lora-squad", (1.02, 0.98, 1.0)))
        for k, (v, f) in enumerate(zip(full, fs, strict=True))
    ]
    md = report.markdown(collect.frame(runs), pd.DataFrame(rows), None, device=MACHINE)
    assert "| adapter | xnli | pytorch | 0.910 | +9.0 |" in md
    assert "| lora-squad | xnli | pytorch | 1.020 | -2.0 |" in md
    assert "| xnli | pytorch | full | yes | 12.6 | 15.0 | - |" in md
    assert "| xnli | pytorch | adapter | NO | 9.0 | - | - |" in md
    costs = [1 / 1.02, 1 / 0.98, 1.0]  # Offline: time per sample relative to full
    mean, low, high = collect.mean_interval(costs)
    # logs -0.0198, +0.0202, 0: mean 0.0001, sd 0.0200; half-width t(0.975, 2) 4.3027 x 0.0200 / sqrt(3)
    assert (mean, low, high) == pytest.approx((1.0001, 0.9517, 1.0511), abs=5e-4)
    assert (
        f"| lora-squad | 1 of 1 | 0.2 | 0.980, 1.020, 1.000 | {mean:.3f} | {low:.3f}-{high:.3f} |" in md
    )
    assert "| Offline | performance | 6 | 3 | 1 | 5 |" in md


def test_report_links_speed_md_only_when_it_exists(tmp_path):
    out = tmp_path / "out"
    assert "[speed.md](speed.md)" not in report.write_report(tmp_path / "none", out)["md"].read_text()
    (out / "speed.json").write_text("{}\n")  # speed.json and speed.md come together
    assert "[speed.md](speed.md)" in report.write_report(tmp_path / "none", out)["md"].read_text()


def plan(*args, **kwargs) -> list:
    return study.plan_cells(study.Grid(*args, **kwargs))


def test_plan_orders_offline_before_server_and_counts_cells():
    cells = plan(
        study.MODELS,
        study.TASKS,
        list(study.BACKEND_VARIANTS),
        study.SCENARIOS,
        latency_tasks=["xnli"],
        accuracy_backends=["pytorch", "onnxruntime-int8"],
        server_fractions=[0.5, 0.9],
        server_backends=["pytorch", "onnxruntime-int8"],
    )
    # Offline 5x4x3 + SingleStream 5x3 + Server 5x2x2 + accuracy 5x4x2
    assert len(cells) == 60 + 15 + 20 + 40
    names = [c.name for c in cells]
    assert names.index("full.xnli.pytorch.Offline.performance") < names.index(
        "full.xnli.pytorch.Server.performance-qps0.50"
    )
    with pytest.raises(ValueError, match="onnxruntime-int8"):
        plan(["full"], ["xnli"], ["onnx-int8"], ["Offline"])


def test_seed_cells_per_task_for_every_model_and_the_first_n_seeds():
    """--seeds 0,1,2 --seed_tasks xnli,tydiqa:2: XNLI accuracy cells of seeds 1 and 2 and TyDiQA's
    of seed 1 only, for every model the task runs (seed 0's are the ordinary cells)."""
    models = ["full", "adapter", "lora-squad"]
    grid = dict(accuracy_backends=["pytorch"], seeds=[0, 1, 2])
    tasks = ["xnli", "tydiqa", "tatoeba"]
    cells = plan(
        models, tasks, ["pytorch"], ["Offline"], seed_tasks=[("xnli", None), ("tydiqa", 2)], **grid
    )
    seeded = [(c.model, c.task, c.seed) for c in cells if c.seed]
    assert seeded == [
        ("full", "xnli", 1), ("adapter", "xnli", 1), ("lora-squad", "xnli", 1),
        ("full", "xnli", 2), ("adapter", "xnli", 2), ("lora-squad", "xnli", 2),
        ("full", "tydiqa", 1), ("adapter", "tydiqa", 1), ("lora-squad", "tydiqa", 1),
    ]  # fmt: skip
    assert {(c.backend, c.scenario, c.mode) for c in cells if c.seed} == {
        ("pytorch", "Offline", "accuracy")
    }
    assert [c.name for c in cells if c.seed][-1] == "lora-squad.tydiqa.pytorch.Offline.accuracy.seed1"
    # --seed_models narrows them; the default --seed_tasks is XNLI alone
    narrow = plan(models, tasks, ["pytorch"], ["Offline"], seed_models=["adapter"], **grid)
    assert [(c.model, c.task, c.seed) for c in narrow if c.seed] == [
        ("adapter", "xnli", 1),
        ("adapter", "xnli", 2),
    ]
    # on a retrieval task a model without an intermediate stage serves the pretrained encoder,
    # the same weights under every seed: no seed cells for it (full, adapter), only for lora-squad
    retrieval = plan(models, tasks, ["pytorch"], ["Offline"], seed_tasks=[("tatoeba", None)], **grid)
    assert [(c.model, c.task, c.seed) for c in retrieval if c.seed] == [
        ("lora-squad", "tatoeba", 1),
        ("lora-squad", "tatoeba", 2),
    ]


@pytest.mark.parametrize(
    "flag, message",
    [
        ("tydiqa:0", "'tydiqa:0': N in TASK:N must be a whole number >= 1"),
        ("tydiqa:two", "'tydiqa:two': N in TASK:N must be a whole number >= 1"),
        ("tydqa", "tydqa"),
    ],
)
def test_seed_tasks_refuses_a_bad_item_by_name(flag, message):
    with pytest.raises(ValueError, match=message):
        study.seed_tasks(flag)
    assert study.seed_tasks("xnli, tydiqa:2") == [("xnli", None), ("tydiqa", 2)]


def test_another_zoo_and_its_seeds_are_served_and_keyed(tmp_path):
    """--models_dir: seed 0 serves that zoo, seed k the one beside it; a cell done on another zoo is
    not done (the key names the zoo only where it is set, so older markers still match)."""
    base = study.StudySettings(runs_dir=tmp_path / "runs", encoder="tiny")
    moved = study.StudySettings(runs_dir=tmp_path / "runs", encoder="tiny", models_dir=tmp_path / "zoo")
    cell = study.Cell("full", "xnli", "pytorch", "Offline", "accuracy")
    seeded = study.Cell("full", "xnli", "pytorch", "Offline", "accuracy", seed=2)
    assert cell.config(base).models_dir is None
    assert cell.config(moved).models_dir == str(tmp_path / "zoo")
    assert seeded.config(moved).models_dir == str(tmp_path / "zoo-seed2")
    assert "models_dir" not in cell.settings_key(base)
    assert cell.settings_key(moved)["models_dir"] == str(tmp_path / "zoo")  # outside: as given
    inside = study.StudySettings(runs_dir=tmp_path, encoder="tiny", models_dir=REPO / "build" / "zoo")
    assert cell.settings_key(inside)["models_dir"] == "build/zoo"  # a committed marker: any checkout


def test_a_study_run_folder_in_reports_keeps_its_record_not_its_logs():
    """The second design's run folders live in reports/ (committed as each cell finishes, so another
    checkout resumes): git keeps their records and gzip scores, not the logs or plain copies."""
    folder = "reports/study-e5-v2/runs/seed-1/pytorch/e5-small/pytorch/full/xnli/Offline/accuracy/"
    paths = [
        folder + name
        for name in (
            "results.json",
            "run_config.json",
            "accuracy.json",
            study.MARKER,
            "per_sample.json.gz",
            "per_sample.json",
            "mlperf_log_accuracy.json",
            "mlperf_log_detail.txt",
            ".lock",
        )
    ] + ["reports/study-e5-v2/runs/logs/full.log", "reports/study-e5-v2/runs/study_log.jsonl"]
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert ignored == paths[5:]


def test_the_plan_counts_each_zoo_stage_still_to_train_once(tmp_path):
    """e5-small, seed 0's encoder and full/xnli built: what is left is seed 1's encoder and full/xnli,
    adapter-squad's SQuAD stage (once, though two cells serve it) and TyDiQA stage, full-nli's NLI
    stage (estimated from full/xnli by rows x epochs) and full's PAWS-X stage (not measured:
    counted, not timed); a selected 8 of 5 epochs scales full/xnli."""
    zoo = tmp_path / "zoo"
    for built in ("encoder", "full/xnli"):
        (zoo / built).mkdir(parents=True)
        (zoo / built / ".done").write_text("1 s\n")
    s = study.StudySettings(runs_dir=tmp_path / "runs", encoder="e5-small", models_dir=zoo)
    acc = dict(backend="pytorch", scenario="Offline", mode="accuracy")
    cells = [
        study.Cell("full", "xnli", **acc),
        study.Cell("full", "xnli", **acc, seed=1),
        study.Cell("adapter-squad", "tydiqa", **acc),
        study.Cell("adapter-squad", "tatoeba", **acc),
        study.Cell("full-nli", "bucc", **acc),
        study.Cell("full", "pawsx", **acc),
    ]
    minutes, stages, unmeasured = study.zoo_training(cells, s)
    assert (stages, unmeasured) == (6, 1)
    assert minutes == pytest.approx(1.25 + 2.6 + 5.0 + 27.7 + 8.2)
    chosen = tmp_path / "selected.toml"
    chosen.write_text(
        'encoder = "e5-small"\ngrid = "g"\n[selected.xnli.full]\n'
        "lr = 5e-5\nepochs = 8\nmax_epochs = 10\ndev = 60.0\nseeds = [0]\n"
    )
    selected = study.StudySettings(
        runs_dir=s.runs_dir, encoder="e5-small", models_dir=zoo, selected=(chosen,)
    )
    assert study.zoo_training(cells[1:2], selected)[0] == pytest.approx(1.25 + 2.6 * 8 / 5)
    (zoo.with_name("zoo-seed1") / "full" / "xnli").mkdir(parents=True)
    (zoo.with_name("zoo-seed1") / "full" / "xnli" / ".done").write_text("1 s\n")
    assert study.zoo_training(cells[1:2], selected) == (1.25, 1, 0)


def test_rounds_are_interleaved_and_rotated():
    """Every model of a round runs before the next round, and round r starts at the r-th model:
    over len(models) rounds each model goes first once (TyDiQA, 2026-11-30: full, first in every
    round, measured below full-squad, the same graph later in the round, in 13 of 15 pairs)."""
    models = ["full", "adapter", "lora-squad"]
    cells = plan(models, ["xnli"], ["pytorch"], ["Offline"], rounds=4)
    order = [(c.round, c.model) for c in cells]
    assert order == [
        (0, "full"),
        (0, "adapter"),
        (0, "lora-squad"),
        (1, "adapter"),
        (1, "lora-squad"),
        (1, "full"),
        (2, "lora-squad"),
        (2, "full"),
        (2, "adapter"),
        (3, "full"),
        (3, "adapter"),
        (3, "lora-squad"),
    ]
    # a retrieval task whose models are all left out has no cells in any round
    none = plan(["full"], ["tatoeba"], ["pytorch"], ["Offline"], rounds=3, retrieval_models=["adapter"])
    assert none == []


FAKE_RUNNER = """#!{python}
import json, sys
from pathlib import Path
argv = sys.argv[1:]
defaults = {{"--model": "full", "--task": "xnli", "--scenario": "Offline", "--encoder": "tiny",
            "--backend": "pytorch", "--dtype": "fp32"}}  # the runner's defaults
arg = lambda k: argv[argv.index(k) + 1] if k in argv else defaults[k]
mode = "accuracy" if "--accuracy" in argv else "performance"
variant = arg("--backend") + ("" if arg("--dtype") == "fp32" else "-" + arg("--dtype"))
folder = Path(arg("--output_dir")) / arg("--encoder") / variant / arg("--model") / arg("--task")
folder = folder / arg("--scenario") / mode  # RunFolder.plan's layout
folder.mkdir(parents=True, exist_ok=True)
sps = 100.0 if arg("--model") == "full" else 80.0
res = {{"result_valid": True, "scenario": arg("--scenario"), "mode": mode, "samples_per_second": sps}}
if "--user_conf" in argv:
    res["target_qps"] = float(open(arg("--user_conf")).read().split("target_qps = ")[-1])
(folder / "results.json").write_text(json.dumps(res))
cfg = {{"model": arg("--model"), "task": arg("--task"), "scenario": arg("--scenario"), "mode": mode,
        "backend": "pytorch"}}
(folder / "run_config.json").write_text(json.dumps(cfg))
if mode == "accuracy":
    scores = {{"statistic": "mean", "per_language": {{"en": {{"ids": [0, 1], "scores": [1.0, 0.0]}}}}}}
    (folder / "per_sample.json").write_text(json.dumps(scores))
with open({calls!r}, "a") as f:
    f.write(" ".join(argv) + "\\n")
"""


def test_study_is_resumable(tmp_path):
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_RUNNER.format(python=sys.executable, calls=str(tmp_path / "calls.txt")))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    runs = tmp_path / "runs"
    settings = study.StudySettings(runs_dir=runs, duration_s=1.0, python=str(fake))
    cells = plan(
        ["full"],
        ["xnli"],
        ["pytorch"],
        ["Offline", "Server"],
        latency_tasks=None,
        accuracy_backends=["pytorch"],
        server_fractions=[0.5],
    )
    assert len(cells) == 3
    records = study.run_study(cells, settings, progress=False)
    assert [r.get("rc") for r in records] == [0, 0, 0]
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 3
    conf = Path(calls[1].split("--user_conf ")[1].split()[0]).read_text()
    assert conf.endswith("full.Server.target_qps = 50.00\n")  # 0.5 x the Offline cell's 100 samples/s
    assert "--allow_invalid" in calls[1] and "--allow_invalid" not in calls[2]
    assert "--duration 1" in calls[0] and "--accuracy" in calls[2]
    assert all(study.is_done(c, settings) for c in cells)
    assert all(r["wall_s"] > 0 for r in records)
    marker = json.loads((study.result_folder(cells[0], settings) / study.MARKER).read_text())
    # each cell's wall and CPU time are kept in its marker (the fake runs are child processes)
    assert marker["wall_s"] == records[0]["wall_s"] and marker["cpu_s"] == records[0]["cpu_s"] > 0
    assert marker["argv"][0] == str(fake)  # outside the repository: as given
    inside = [f"{REPO}/.venv/bin/python", "-m", "harness", "--models_dir", f"{REPO}/build/m", "/opt/x"]
    assert study.portable(inside) == [
        ".venv/bin/python",
        "-m",
        "harness",
        "--models_dir",
        "build/m",
        "/opt/x",
    ]
    accuracy = study.result_folder(cells[2], settings)  # its scores also gzip-kept, fixed bytes
    kept = (accuracy / "per_sample.json.gz").read_bytes()
    assert gzip.decompress(kept) == (accuracy / "per_sample.json").read_bytes()
    assert kept[4:8] == b"\0\0\0\0"  # no timestamp: the same scores give the same committed bytes
    (accuracy / "per_sample.json").unlink()  # as a clone of the repository has it
    scores = UnitScores.load(accuracy)
    assert scores.statistic == "mean" and scores.languages["en"][0] == [0, 1]
    assert list(scores.languages["en"][1]) == [1.0, 0.0]

    again = study.run_study(cells, settings, progress=False)
    assert all(r.get("skipped") for r in again)
    assert len((tmp_path / "calls.txt").read_text().splitlines()) == 3  # nothing re-ran

    longer = study.StudySettings(runs_dir=runs, duration_s=2.0, python=str(fake))
    assert not study.is_done(cells[0], longer)  # other settings: the performance cell is stale
    assert study.is_done(cells[2], longer)  # accuracy does not depend on the duration
    other_qps = study.StudySettings(runs_dir=runs, duration_s=1.0, python=str(fake), offline_qps=123.0)
    assert not study.is_done(cells[0], other_qps)  # the Offline query size changed
    assert study.is_done(cells[2], other_qps)  # nor on the Offline target_qps


def test_offline_queries_are_sized_per_backend(tmp_path):
    """e5-small's Offline target_qps is set per task and backend (one query size for every model of
    a backend); a task without one falls back to its per-task target, --offline_qps overrides both."""
    e5 = study.StudySettings(runs_dir=tmp_path, duration_s=5.0, encoder="e5-small")
    cell = study.Cell("adapter", "xnli", "onnxruntime-int8", "Offline", "performance")
    assert study.offline_qps(cell, e5) == 240.0
    for task, target in (("tydiqa", 35.0), ("pawsx", 250.0)):
        assert (
            study.offline_qps(study.Cell("full", task, "pytorch", "Offline", "performance"), e5)
            == target
        )
    assert cell.settings_key(e5)["offline_qps"] == 240.0
    conf = study.cell_config(cell, e5).user_conf.read_text()
    assert conf.rstrip().splitlines()[-1] == "adapter-e5-small.Offline.target_qps = 240.00"
    forced = study.StudySettings(runs_dir=tmp_path, duration_s=5.0, encoder="e5-small", offline_qps=99.0)
    assert study.offline_qps(cell, forced) == 99.0


def test_server_at_a_common_load_in_every_round(tmp_path):
    """--server_common F: every model is offered F x full's Offline samples/s (not its own), in every
    round, for PEAK_TRIAL_S, beside the find_peak search; its cells live in qps-F-of-full folders."""
    models = ["full", "adapter"]
    server = {"scenarios": ["Offline", "Server"], "server_qps": "peak", "server_common": 0.25}
    cells = plan(models, ["xnli"], ["pytorch"], rounds=3, **server)
    assert [c.name for c in cells] == [
        "full.xnli.pytorch.Offline.performance",
        "full.xnli.pytorch.Server.performance",
        "full.xnli.pytorch.Server.performance-qps0.25-of-full",
        "adapter.xnli.pytorch.Offline.performance",
        "adapter.xnli.pytorch.Server.performance",
        "adapter.xnli.pytorch.Server.performance-qps0.25-of-full",
        "adapter.xnli.pytorch.Offline.performance.round1",
        "adapter.xnli.pytorch.Server.performance-qps0.25-of-full.round1",
        "full.xnli.pytorch.Offline.performance.round1",
        "full.xnli.pytorch.Server.performance-qps0.25-of-full.round1",
        "full.xnli.pytorch.Offline.performance.round2",
        "full.xnli.pytorch.Server.performance-qps0.25-of-full.round2",
        "adapter.xnli.pytorch.Offline.performance.round2",
        "adapter.xnli.pytorch.Server.performance-qps0.25-of-full.round2",
    ]
    # --server_models: the others get no Server cell of either kind (full's Offline still sets the load)
    only = plan(models, ["xnli"], ["pytorch"], rounds=2, server_models=["adapter"], **server)
    assert [c.name for c in only if c.scenario == "Server"] == [
        "adapter.xnli.pytorch.Server.performance",
        "adapter.xnli.pytorch.Server.performance-qps0.25-of-full",
        "adapter.xnli.pytorch.Server.performance-qps0.25-of-full.round1",
    ]
    # no full, no common load; none either where Server is not asked for
    assert not any(c.load_of for c in plan(["adapter"], ["xnli"], ["pytorch"], rounds=2, **server))
    server["scenarios"] = ["Offline"]
    assert not any(c.load_of for c in plan(models, ["xnli"], ["pytorch"], rounds=2, **server))

    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_RUNNER.format(python=sys.executable, calls=str(tmp_path / "calls.txt")))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings = study.StudySettings(runs_dir=tmp_path / "runs", duration_s=1.0, python=str(fake))
    common = [c for c in cells if c.load_of or c.scenario == "Offline"]
    assert [r.get("rc") for r in study.run_study(common, settings, progress=False)] == [0] * 12
    calls = [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "--scenario Server" in c]
    assert len(calls) == 6 and all("--duration 60" in c for c in calls)  # PEAK_TRIAL_S, not find_peak
    loads = [Path(c.split("--user_conf ")[1].split()[0]).read_text().rsplit("= ", 1)[1] for c in calls]
    assert loads == ["25.00\n"] * 6  # 0.25 x full's 100 samples/s, for adapter (80 samples/s) too
    assert (
        "--output_dir " + str(tmp_path / "runs" / "round-1" / "pytorch" / "qps-0.25-of-full") in calls[2]
    )
    # markers of cells without a common load keep the settings key they had before load_of existed
    assert "load_of" not in cells[0].settings_key(settings)["cell"]
    assert cells[2].settings_key(settings)["cell"]["load_of"] == "full"
    assert cells[2].settings_key(settings)["server_qps"] is None  # a fixed load: not searched


def test_report_from_the_committed_runs_csv(tmp_path):
    """`--from_runs_csv`: the report rebuilt from a study_runs.csv alone (no run folders):
    the csv is left as it was, the machine is the previous report's, the per-seed figures are written,
    and the verdicts come from the seeds (a - b = 52 - 57 over 3 seeds each, variance 4 per model:
    95% interval -5 +- 2.7764 sqrt(8/3) on Welch's 4 df; with the untested full-squad - full beside it,
    Holm judges it at 1 - 0.05/2: -5 +- 3.4954 sqrt(8/3), t tables)."""
    out = tmp_path / "out"
    out.mkdir()
    columns = [
        k for k in collect.Run.__dataclass_fields__ if k not in ("per_language", "latency_pct_ms")
    ]
    acc = [("adapter", "pytorch", s, v) for s, v in enumerate((50.0, 52.0, 54.0))]
    acc += [("full", "pytorch", s, v) for s, v in enumerate((55.0, 57.0, 59.0))]
    acc += [("full-squad", "pytorch", 0, 58.0)]
    acc += [("full", "onnxruntime-int8", 0, 53.5)]
    lines = [",".join(columns)]
    for model, backend, seed, value in acc:
        row = dict.fromkeys(columns, "") | {
            "path": f"{backend}/{model}/xnli/Offline/accuracy-{seed}",
            "model": model,
            "task": "xnli",
            "scenario": "Offline",
            "mode": "accuracy",
            "backend": backend,
            "encoder": "e5-small",
            "model_kind": "real",
            "result_valid": "True",
            "metric": "accuracy",
            "metric_value": str(value),
            "seed": str(seed),
            "round": "0",
        }
        lines.append(",".join(row[c] for c in columns))
    (out / "study_runs.csv").write_text("\n".join(lines) + "\n")
    before = (out / "study_runs.csv").read_bytes()
    (out / "study.md").write_text("# old\n\nMachine: Intel(R) Xeon(R) Processor, 2 cores, 23.5 GiB.\n")
    written = report.write_report(
        tmp_path / "no-runs", out, command="python -m research study x", runs_csv=out / "study_runs.csv"
    )
    assert (out / "study_runs.csv").read_bytes() == before
    md = written["md"].read_text()
    assert "Machine: Intel(R) Xeon(R) Processor, 2 cores, 23.5 GiB." in md
    with open(written["seeds_csv"]) as f:
        seeds = [(r["model"], int(r["seed"]), float(r["value"])) for r in csv.DictReader(f)]
    assert seeds == [
        ("adapter", 0, 50.0),
        ("adapter", 1, 52.0),
        ("adapter", 2, 54.0),
        ("full", 0, 55.0),
        ("full", 1, 57.0),
        ("full", 2, 59.0),
        ("full-squad", 0, 58.0),
    ]
    assert (
        "| XNLI | adapter - full | adapters instead of full fine-tuning | 3, 3 | seeds | 0.0376 "
        "| 97.50% | -5.0 [-10.7, +0.7] | -5.0 [-9.5, -0.5] | 4.0 | cannot tell |"
    ) in md
    assert (
        "| XNLI | full-squad - full | the intermediate task (SQuAD), full fine-tuning | 1, 3 | untested"
        in md
    )
    assert "| - | - | +3.0 | - | - | not tested |" in md  # the seed-0 checkpoints' difference only
    assert "| XNLI | full | - | -1.50 |" in md  # int8 minus fp32, task figures (no per-sample scores)


def test_the_report_keeps_per_sample_scores_and_rebuilds_its_intervals_from_them(tmp_path):
    """A report made from run folders copies each accuracy run's per_sample.json (gzip, no timestamp)
    into per_sample/; rebuilt from its study_runs.csv alone it reads them back, so its bootstrap
    intervals and verdicts are the very ones the run folders gave."""
    root, out = tmp_path / "runs", tmp_path / "out"
    rng = np.random.default_rng(7)
    right = rng.random((3, 60)) < 0.6
    for model, correct in (("full", right), ("adapter", right & (rng.random(right.shape) < 0.9))):
        per = {
            lang: {"ids": list(range(60)), "scores": (100.0 * correct[k]).tolist()}
            for k, lang in enumerate(("en", "de", "sw"))
        }
        value = float(np.mean([100.0 * c.mean() for c in correct]))
        folder = _write_run(
            root,
            "pytorch",
            "fp32",
            model,
            "xnli",
            "Offline",
            "accuracy",
            {},
            {"accuracy": value},
            kind="real",
        )
        (folder / "per_sample.json").write_text(json.dumps({"statistic": "mean", "per_language": per}))
    report.write_report(root, out)
    kept = out / "per_sample" / "pytorch-fp32__full__xnli__Offline__accuracy.json.gz"
    source = root / "pytorch-fp32" / "full" / "xnli" / "Offline" / "accuracy" / "per_sample.json"
    assert gzip.decompress(kept.read_bytes()) == source.read_bytes()
    assert kept.read_bytes()[4:8] == b"\0\0\0\0"  # gzip's mtime field: 0, reproducible bytes
    from_folders = accuracy_study(collect.collect_runs(root))
    from_csv = accuracy_study(collect.runs_from_csv(out / "study_runs.csv"), kept=out / "per_sample")
    (a,), (b,) = from_folders.verdicts, from_csv.verdicts
    assert (a.a, a.b, a.basis) == ("adapter", "full", "one seed")
    assert (b.interval, b.p, b.word) == (a.interval, a.p, a.word)
    md = report.write_report(root, out, runs_csv=out / "study_runs.csv")["md"].read_text()
    assert "The bootstrap intervals come from the per-sample scores kept in `per_sample/`." in md
    assert f"| XNLI | adapter - full | {a.interval95.text()} |" in md


def test_time_spent_sums_the_cells_markers_per_task_mode_and_seed(tmp_path):
    """The report's "Time spent": each cell's marker gives its wall and CPU seconds (training
    included); rows per task, mode and seed, then all, in wall hours, wall x cores, and CPU hours
    over the cells whose marker records them (older markers have wall_s only); a run without a
    marker counts in none."""
    (tmp_path / study.MARKER).write_text(json.dumps({"settings": {}, "wall_s": 5400.0}))
    assert collect.cell_seconds(tmp_path) == 5400.0 and collect.cell_seconds(tmp_path, "cpu_s") is None
    (tmp_path / study.MARKER).write_text(json.dumps({"wall_s": 5400.0, "cpu_s": 9000.0}))
    assert collect.cell_seconds(tmp_path, "cpu_s") == 9000.0
    (tmp_path / study.MARKER).write_text("{not json")
    assert collect.cell_seconds(tmp_path) is None and collect.cell_seconds(tmp_path / "none") is None

    def run(seed, wall, mode="accuracy", cpu=None):
        return collect.Run(
            "p", "full", "xnli", "Offline", mode, "pytorch", seed=seed, cell_wall_s=wall, cell_cpu_s=cpu
        )

    table = collect.frame(
        [
            run(0, 5400.0, cpu=7200.0),
            run(1, 1800.0, cpu=1800.0),
            run(1, 900.0),
            run(1, None, cpu=50.0),
            run(0, 360.0, "performance"),
        ]
    )
    assert report.time_rows(table, cores=2) == [
        ["xnli", "accuracy", 0, 1, "1.50", "3.00", "2.00", 1],
        ["xnli", "accuracy", 1, 2, "0.75", "1.50", "0.50", 1],
        ["xnli", "performance", 0, 1, "0.10", "0.20", "-", 0],
        ["all", "", "", 4, "2.35", "4.70", "2.50", 2],
    ]
    assert report.time_rows(collect.frame([run(0, None)]), cores=2) == []


def test_cpu_seconds_count_a_child_process_and_not_a_pause():
    """A cell's CPU seconds include the processes it waited for (the run, a zoo build) and nothing
    for time spent waiting: a child that burns CPU adds about its CPU time; one that sleeps adds
    almost none, however long it sleeps."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    before = study.cpu_seconds()
    subprocess.run([sys.executable, "-c", burn], check=True)
    burned = study.cpu_seconds() - before
    before = study.cpu_seconds()
    subprocess.run([sys.executable, "-c", "import time; time.sleep(1.0)"], check=True)
    slept = study.cpu_seconds() - before
    assert burned >= 0.6 and slept < 0.5
