"""The front door: `python -m harness` dispatch and `info`."""

import json
import re
import subprocess
import sys

import pytest

from harness.cli import COMMANDS, floats, ints, main, names
from harness.info import package_versions


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_the_core_cli_lists_only_the_core_commands(capsys):
    """The zoo's build (`python -m zoo build`), the study's tools (`python -m research ...`) and the
    harness-efficiency benchmark (`python -m bench benchmark`) have their own front doors; the core's
    neither lists nor forwards them."""
    from bench.cli import COMMANDS as BENCH
    from bench.cli import main as bench_main
    from research.cli import COMMANDS as RESEARCH
    from research.cli import main as research_main

    assert sorted(COMMANDS) == ["compliance", "find_peak", "info", "run", "submission"]
    assert main(["--help"]) == 0
    listed = re.findall(r"^    (\w+)", capsys.readouterr().out, re.M)
    assert listed == ["info", "run", "find_peak", "compliance", "submission"]
    for name in ["models", *RESEARCH, *BENCH]:
        try:
            rc = main([name])
        except SystemExit as exc:  # argparse's invalid choice
            rc = exc.code
        assert rc == 3, name
        assert f"invalid choice: '{name}'" in capsys.readouterr().err
    argv = ["study", "--plan", "--tasks", "xnli", "--models", "full"]
    assert research_main(argv) == 0
    assert capsys.readouterr().out.startswith("study: ")
    assert sorted(BENCH) == ["benchmark", "multitask"] and not set(BENCH) & set(RESEARCH)
    assert bench_main(["--help"]) == 0
    assert re.findall(r"^    (\w+)", capsys.readouterr().out, re.M) == ["benchmark", "multitask"]


def test_list_flags_are_stripped_and_blank_items_dropped():
    """The type of every list flag of the front doors (the study's, multitask's, the benchmark's)."""
    assert names(" xnli, tydiqa,,") == ["xnli", "tydiqa"] and names("") == names(None) == []
    assert floats("0.9, 0.75") == [0.9, 0.75] and ints("1,2,4,") == [1, 2, 4]
    with pytest.raises(ValueError):  # argparse: one usage error, exit 3
        floats("0.9,x")
    with pytest.raises(ValueError):
        ints("1.5")


def test_usage_errors_exit_3_not_the_sut_failure_code(capsys):
    """argparse's own status is 2, the SUT-failure code: every usage error exits 3 instead."""
    for argv in (["frobnicate"], ["run", "--max_batch", "x"], ["run", "--scenario", "Ofline"]):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse reports the problem and exits
            rc = exc.code
        assert rc == 3, argv
    err = capsys.readouterr().err
    assert "invalid choice: 'frobnicate'" in err and "invalid int value: 'x'" in err
    assert main([]) == 3


def test_info_json_reports_pinned_versions_and_paths():
    out = subprocess.run(
        [sys.executable, "-m", "harness", "info", "--json"], capture_output=True, text=True, check=True
    ).stdout
    info = json.loads(out)
    assert info["versions"]["mlperf_loadgen"] == "6.0.17"
    assert info["versions"]["torch"].startswith("2.13.0")
    assert info["versions"]["transformers"].startswith("4.57.")
    assert info["device"]["cpu_cores"] >= 1
    assert info["paths"]["user_conf"].endswith("user.conf")
    assert len(info["git_sha"]) in (40, len("unknown"))


def test_package_versions_names_missing_packages_as_none(monkeypatch):
    versions = package_versions()
    assert set(versions) >= {"python", "torch", "onnxruntime", "mlperf_loadgen"}
    assert versions["numpy"] is not None


def test_run_flags_layer_defaults_device_encoder_then_flags():
    """defaults < device < encoder < flags: the measured per-encoder cost model reaches the SUT."""
    import argparse

    from harness.config import RunConfig, add_run_arguments

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)

    def cfg(*argv):
        return RunConfig.from_args(parser.parse_args(list(argv)))

    tiny = cfg().sut_options()
    assert (tiny.max_batch, tiny.token_budget, tiny.batch_overhead_tokens, tiny.gather_limit) == (
        32,
        4096,
        192,
        128,
    )
    assert cfg("--encoder", "base").sut_options().batch_overhead_tokens == 32
    large = cfg("--encoder", "large").sut_options()
    assert (large.token_budget, large.batch_overhead_tokens) == (2048, 16)
    cuda = cfg("--device", "cuda", "--encoder", "large").sut_options()
    assert (cuda.max_batch, cuda.token_budget, cuda.batch_overhead_tokens) == (256, 32768, 4096)
    flags = cfg("--encoder", "base", "--batch_overhead_tokens", "7", "--gather", "9").sut_options()
    assert (flags.batch_overhead_tokens, flags.gather_limit) == (7, 9)
