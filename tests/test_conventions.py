"""Run configuration: first-use zoo stages, user.conf as LoadGen reads it, reference-harness flags."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from common.exit_codes import BAD_INPUT
from common.paths import REPO
from harness.config import RunConfig
from harness.run_folder import checkpoint_sha256
from harness.runner import prepare
from models.loaders import DONE
from models.registry import MODELS, TASKS
from models.zoo_layout import ZOO_ENCODERS
from zoo.cli import build_parser
from zoo.cli import main as zoo_main
from zoo.recipe import (
    ENCODER_STAGES,
    SIZES,
    build_announcement,
    configure_for_run_parser,
    stages_for_run,
)


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
    run's checkpoint lookup serves from, and every stage it depends on comes before it: the
    encoder, the intermediate stage (another MODEL's where it reuses one), and the target stages
    of the MODELs its own starts from (adapter-fusion-squad: the `adapter` arm's)."""

    for model in readme_names("MODEL"):
        spec = MODELS[model]
        for task in readme_names("TASK"):
            target = TASKS[task]
            plan = [s.folder for s in stages_for_run(model, task, encoder)]
            assert plan[-1] == spec.folder(target.kind, target.name), (model, task, plan)
            assert plan[0] == "encoder"
            inter = spec.intermediate_folder()
            assert (inter in plan) == (spec.intermediate is not None), (model, task, plan)
            targets = [*spec.prerequisites(), model] if task in ("xnli", "pawsx", "tydiqa") else []
            want = ["encoder", *filter(None, [inter]), *(f"{m}/{task}" for m in targets)]
            assert plan == want, (model, task, plan)


def test_first_use_estimate_adds_the_measured_stage_times():

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
    tiny = build_announcement(stages_for_run("lora-squad", "tatoeba", "tiny"), "lora-squad/tatoeba", 8.1)
    assert (
        "building 2 zoo stage(s): encoder tiny (not measured), lora-squad squad (not measured); "
        "at most 8.1 min (the whole zoo's training)" in tiny
    )


ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
}
GUARD_S = 600  # a guard against a hang only


def make_run_commands(tmp_path: Path, **variables: str) -> list[list[str]]:
    """The command lines `make run` runs for these make variables (`make -n`: printed, not run), with
    this interpreter as $(PY) and a fresh install stamp (so no install step is among them)."""
    stamp = tmp_path / "installed"
    stamp.touch()
    argv = ["make", "-n", "-s", "run", f"PY={sys.executable}", f"STAMP={stamp}"]
    argv += [f"{name}={value}" for name, value in variables.items()]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=True, timeout=GUARD_S)
    return [shlex.split(line) for line in out.stdout.splitlines() if line.strip()]


def run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=GUARD_S)


def built(zoo: Path) -> list[str]:
    """The zoo stages finished in `zoo` (folders holding the .done marker)."""
    return sorted(str(p.parent.relative_to(zoo)) for p in zoo.rglob(DONE))


def test_make_run_builds_a_missing_model_then_serves_it(tmp_path):
    """A fresh clone's `make run MODEL=full-squad TASK=bucc` used to build the encoder only, then stop
    with "no checkpoint ... full-squad/squad". The two commands `make run` runs, as it runs them: the
    zoo build of the run's stages (the encoder and the intermediate stage; BUCC trains nothing), then
    the run, which serves that stage. The test-sized recipe through ZOO_ARGS, the zoo in tmp_path."""
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    build, serve = make_run_commands(
        tmp_path,
        MODEL="full-squad",
        TASK="bucc",
        ENCODER="tiny",
        COUNT="8",
        DURATION="1",
        LOG_DIR=str(out),
        RUN_ARGS=f"--models_dir {zoo} --languages zh --allow_invalid",
        ZOO_ARGS="--tiny-test",
    )
    assert build[:5] == [sys.executable, "-m", "zoo", "build", "--for_run"] and "--tiny-test" in build
    assert serve[:4] == [sys.executable, "-m", "harness", "run"] and "--tiny-test" not in serve
    assert serve[4:] == [a for a in build[5:] if a != "--tiny-test"]  # the run's flags, RUN_ARGS too

    first = run(build)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "first use of full-squad/bucc (tiny)" in first.stdout
    assert "building 2 zoo stage(s): encoder tiny (not measured), full-squad squad" in first.stdout
    assert built(zoo) == ["encoder", "full-squad/squad"]
    assert not out.exists()  # the build writes no run folder

    served = run(serve)
    assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]
    assert "first use" not in served.stdout and built(zoo) == ["encoder", "full-squad/squad"]
    (results,) = out.rglob("results.json")
    config = json.loads((results.parent / "run_config.json").read_text())
    assert config["checkpoint_sha256"] == checkpoint_sha256(zoo / "full-squad" / "squad")
    assert (config["model_kind"], config["task"], config["count"]) == ("tiny", "bucc", 8)
    assert json.loads(results.read_text())["exit_status"] == 0

    again = run(build)  # built once: the next `make run` builds nothing and says nothing of it
    assert again.returncode == 0 and "first use" not in again.stdout, again.stderr[-3000:]


def test_harness_run_alone_on_a_missing_model_exits_3_naming_the_build_command(tmp_path):
    """`harness run` serves and never trains: on an empty zoo folder it ends with one `error:` line
    (exit 3, results.json says so) naming the exact build command, and builds nothing. That command
    (with the test-sized recipe) builds what the run needs: the same run then succeeds."""
    zoo, out = tmp_path / "zoo", tmp_path / "out"
    flags = ["--model", "full", "--task", "xnli", "--encoder", "tiny", "--models_dir", str(zoo)]
    harness = [sys.executable, "-m", "harness", "run", *flags, "--languages", "en", "--count", "8"]
    harness += ["--duration", "1", "--allow_invalid", "--output_dir", str(out)]
    missing = run(harness)
    both = missing.stdout + missing.stderr
    assert missing.returncode == BAD_INPUT, both[-3000:]
    (line,) = [x for x in both.splitlines() if x.startswith("error:")]
    command = f"python -m zoo build --for_run {' '.join(flags)}"
    assert line == (
        f"error: full/xnli (tiny): its zoo stage(s) not built in {zoo}; build it first with "
        f"`{command}` (`make run` runs it before the run)"
    )
    assert "Traceback" not in both and not zoo.exists()  # nothing built, not even the folder
    (results,) = out.rglob("results.json")
    assert json.loads(results.read_text())["exit_status"] == BAD_INPUT

    named = shlex.split(command)
    build = run([sys.executable, *named[1:], "--tiny-test"])
    assert build.returncode == 0, build.stderr[-3000:]
    assert built(zoo) == ["encoder", "full/xnli"]
    served = run(harness)
    assert served.returncode == 0, served.stdout[-3000:] + served.stderr[-3000:]


def test_random_weights_without_their_tokenizer_name_the_build_of_the_encoder(tmp_path):
    """Random weights take the tiny zoo's tokenizer: missing, the run names the build (which builds the
    encoder alone, into the run's zoo folder); with the encoder built, the run prepares."""
    zoo = tmp_path / "zoo"
    cfg = RunConfig(task="xnli", languages="en", count=8, weights="random", models_dir=str(zoo))
    with pytest.raises(FileNotFoundError) as err:
        prepare(cfg)
    command = "python -m zoo build --for_run --model full --task xnli --encoder tiny --weights random "
    assert f"`{command}--models_dir {zoo}`" in str(err.value) and not zoo.exists()
    assert zoo_main([*shlex.split(command)[3:], "--models_dir", str(zoo), "--tiny-test"]) == 0
    assert built(zoo) == ["encoder"]
    work = prepare(cfg)
    try:
        assert work.served.model_kind == "random" and len(work.qsl.lengths) == 8
        assert work.tokenizer == str(zoo / "encoder")
    finally:
        work.close()


def test_the_zoo_build_for_a_run_reads_the_run_flags_and_ignores_the_others(capsys):
    """`make run` hands the build every flag of the run: those it does not use are ignored (no
    abbreviation: --model never passes for the whole-zoo build's --models), names are checked with
    one `error:` line, and encoders the zoo does not build (base, large) need nothing here."""
    run_flags = ["--scenario", "Server", "--backend", "onnxruntime", "--count", "8", "--accuracy"]
    assert zoo_main(["build", "--for_run", "--model", "fulll", *run_flags]) == BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown model 'fulll'. Did you mean 'full'? Known: " + ", ".join(MODELS)]
    assert zoo_main(["build", "--for_run", "--encoder", "large", "--task", "tydiqa", *run_flags]) == 0
    assert zoo_main(["build", "--for_run", "--weights", "/some/checkpoint", *run_flags]) == 0
    assert capsys.readouterr().out == ""  # nothing to build, nothing said
    assert zoo_main(["frobnicate"]) == BAD_INPUT
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
    parser = build_parser()  # a flag left out builds what the run would serve without it
    configure_for_run_parser(parser)
    defaults, run = vars(parser.parse_args([])), RunConfig()
    for key in ("model", "task", "encoder", "weights", "models_dir"):
        assert defaults[key] == getattr(run, key), key
    assert (defaults["model"], defaults["task"], defaults["encoder"]) == ("full", "xnli", "tiny")


def test_the_zoo_builds_exactly_the_encoders_serving_counts_as_its_own():
    """models/zoo_layout.py (serving's view: scoring held-out rows, the build command) and the recipe's
    sizes name the same encoders."""
    assert tuple(SIZES) == tuple(ENCODER_STAGES) == ZOO_ENCODERS == ("tiny", "e5-small")


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
        (["info", "--mlperf_conf", "x"], "python -m harness info: unknown flag --mlperf_conf"),
    ],
)
def test_a_reference_harness_flag_gets_one_error_line_naming_ours(capsys, argv, hint):
    from harness.cli import main

    assert main(argv) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("error: ") and hint in lines[0], lines
    assert captured.out == ""


# --- user.conf as LoadGen reads it -----------------------------------------------------------------
def loadgen_reading(conf, model: str, scenario: str):
    """The settings LoadGen itself takes from mlperf.conf and then `conf` (conf_type 0 and 2 do not
    count against the one FromConfig per process)."""
    import mlperf_loadgen as lg

    ts = lg.TestSettings()
    assert ts.FromConfig("", model, scenario, 0) == 0
    assert ts.FromConfig(str(conf), model, scenario, 2) == 0
    return ts


def run_cli(conf, tmp_path, *flags):
    from harness.cli import main

    return main(["run", "--user_conf", str(conf), "--output_dir", str(tmp_path / "out"), *flags])


@pytest.mark.parametrize(
    ("value", "read_as"), [("1e3", 1), ("1.5", 1), ("010", 8), ("-5", 2**64 - 5), ("12abc", None)]
)
def test_an_integer_key_takes_an_integer_literal_only(tmp_path, capsys, value, read_as):
    conf = tmp_path / "user.conf"
    conf.write_text(
        f"full.Offline.target_qps = 700\nfull.*.performance_sample_count_override = {value}\n"
    )
    if read_as is not None:  # what LoadGen would have used without the check
        assert loadgen_reading(conf, "full", "Offline").performance_sample_count_override == read_as
    assert run_cli(conf, tmp_path) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"error: {conf}: line 2: ") and len(err) == 2, err  # + "exit status 3"
    assert "Traceback" not in "".join(err) and not (tmp_path / "out").exists()
    if read_as is not None:
        assert (
            f"performance_sample_count_override is an integer key and takes a decimal integer literal "
            f"(LoadGen would read {value} as {read_as})"
        ) in err[0]
    else:
        assert "value '12abc' is not a number" in err[0], err[0]


@pytest.mark.parametrize(
    ("line", "scenario", "message"),
    [
        ("full.Offline.target_qps = 1e12", "Offline", "target_qps must be > 0 and <= 1e+09 QPS"),
        ("full.Server.target_latency = 0", "Server", "target_latency must be > 0"),
        ("*.*.min_duration = 2000000000", "Offline", "min_duration must be >= 0 and <= 1e+09 ms"),
        ("*.Server.coalesce_queries = 2", "Server", "coalesce_queries must be >= 0 and <= 1"),
        ("full.SingleStream.target_latency_percentile = 120", "SingleStream", "<= 100 %"),
        ("full.Server.target_latency = 130.5", "Server", "would read 130.5 as 130"),
        (
            "*.Server.target_qps = 3e7",
            "Server",
            "line 2: *.Server.target_qps = 3e7: LoadGen would "
            "pre-generate 1.8e+10 samples for this Server run, about 8.58e+03 GiB",
        ),
        (
            "*.Offline.min_query_count = 9000000000",
            "Offline",
            "line 2: *.Offline.min_query_count = 9000000000: LoadGen would pre-generate 9e+09 samples",
        ),
    ],
)
def test_a_value_loadgen_cannot_use_is_refused_before_it_starts(
    tmp_path, capsys, line, scenario, message
):
    """`target_qps = 1e12` made LoadGen die with std::bad_alloc (exit 134, no results.json)."""
    conf = tmp_path / "user.conf"
    conf.write_text(f"full.Offline.target_qps = 700\n{line}\n")
    assert run_cli(conf, tmp_path, "--scenario", scenario) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith(f"error: {conf}: line 2: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_the_schedule_bound_is_half_the_memory(tmp_path):
    """Offline at 760 QPS for 600 s: 1.1 x 600 x 760 = 501,600 samples, 512 bytes each (245 MiB)."""
    from harness.settings import check_schedule

    conf = tmp_path / "user.conf"
    conf.write_text("full.Offline.target_qps = 760\n")
    check_schedule(conf, "full", "Offline", memory_bytes=2 * 245 * 2**20 + 2**20)
    expected = r"line 1: full.Offline.target_qps = 760: LoadGen would pre-generate 5.02e\+05 samples"
    with pytest.raises(ValueError, match=expected + r" .* about 0.239 GiB"):
        check_schedule(conf, "full", "Offline", memory_bytes=2 * 245 * 2**20 - 2**20)
    # a development run's duration sizes it (10 s: 8,360 samples), an accuracy run not at all
    check_schedule(conf, "full", "Offline", duration_s=10, memory_bytes=2 * 8360 * 512)
    check_schedule(conf, "full", "Offline", accuracy=True, memory_bytes=1)
    with pytest.raises(
        ValueError, match=r"no line sets target_qps for full.Server \(mlperf.conf's value\)"
    ):
        check_schedule(conf, "full", "Server", memory_bytes=100)  # mlperf.conf: 1 QPS x 600 s


def test_a_model_with_no_line_warns_with_did_you_mean(tmp_path):
    from harness.settings import check_user_conf

    conf = tmp_path / "user.conf"
    lines = (
        "full-e5-small.Server.target_qps = 4",
        "adapter-e5-small.Server.target_qps = 4",
        "*.*.performance_sample_count_override = 10833",
    )
    conf.write_text("\n".join(lines) + "\n")
    (warning,) = check_user_conf(conf, "full-base", "Server")
    assert warning.startswith(
        f"{conf}: no line is for LoadGen model 'full-base' (did you mean 'full-e5-small'?)"
    )
    assert "mlperf.conf defaults apply (a Server latency bound of 10 ms)" in warning
    assert loadgen_reading(conf, "full-base", "Server").server_target_latency_ns == 10 * 10**6
    assert check_user_conf(conf, "full-e5-small", "Server") == []
    (tmp_path / "star.conf").write_text("*.*.performance_sample_count_override = 10833\n")
    assert check_user_conf(tmp_path / "star.conf", "full-base", "Server") == []  # `*` on purpose


def test_a_key_read_only_elsewhere_warns(tmp_path):
    from harness.settings import check_user_conf

    conf = tmp_path / "user.conf"
    conf.write_text("full.Offline.target_latency = 7\nfull.*.qsl_rng_seed = 1\n")
    first, second = check_user_conf(conf, "full", "Offline")
    read_in = "MultiStream, Server, SingleStream"
    assert first == f"{conf}: line 1: LoadGen reads target_latency only in {read_in}; ignored here"
    assert second.startswith(
        f"{conf}: line 2: qsl_rng_seed: LoadGen reads it from its built-in mlperf.conf only"
    )


def test_user_conf_has_bert_bounds_for_every_model_on_every_readme_encoder():
    """Every MODEL x ENCODER name the README can produce has its own lines: no warning, BERT's
    performance sample count, a 130 ms Server bound, and targets LoadGen takes as given."""
    from harness.config import RunConfig
    from harness.settings import check_schedule, check_user_conf
    from models.encoders import ENCODERS

    assert sorted(readme_names("ENCODER")) == sorted(ENCODERS)
    conf = REPO / "user.conf"
    for encoder in readme_names("ENCODER"):
        for model in readme_names("MODEL"):
            name = RunConfig(model=model, encoder=encoder).loadgen_model_name
            assert name == (model if encoder == "tiny" else f"{model}-{encoder}")
            for scenario in ("SingleStream", "Offline", "Server"):
                assert check_user_conf(conf, name, scenario) == [], (name, scenario)
                check_schedule(conf, name, scenario)
                ts = loadgen_reading(conf, name, scenario)
                assert ts.performance_sample_count_override == 10833, name
                assert ts.server_target_latency_ns == 130 * 10**6, name
                assert ts.min_duration_ms == 600_000 and ts.offline_expected_qps > 1, name
