"""The scheduling knobs have one owner, sut.base.SUTOptions: its defaults are the command line's, the
RunConfig's and every device's base, its fields are the flags, and the SUT gets it by keyword."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields

import pytest

from common.paths import REPO
from harness.config import RunConfig, add_run_arguments
from sut.base import DEVICE_OPTIONS, SUTOptions

KNOBS = [f.name for f in fields(SUTOptions)]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser


def _from_flags(parser: argparse.ArgumentParser, *argv: str) -> RunConfig:
    return RunConfig.from_args(parser.parse_args(list(argv)))


def test_the_command_lines_defaults_are_the_dataclasss_field_by_field(parser):
    """A run with no scheduling flag gets SUTOptions's defaults on CPU and the cuda mapping over them
    on CUDA: a second default anywhere (a flag, RunConfig, a device table) would break one of these."""
    defaults = SUTOptions()
    assert (defaults.max_batch, defaults.token_budget, defaults.workers) == (32, 4096, 1)
    got = _from_flags(parser).sut_options()
    for name in KNOBS:
        assert getattr(got, name) == getattr(defaults, name), name
    cuda = _from_flags(parser, "--device", "cuda").sut_options()
    expected = SUTOptions.for_device("cuda")
    for name in KNOBS:
        assert getattr(cuda, name) == getattr(expected, name), name
    assert (cuda.max_batch, cuda.token_budget, cuda.workers, cuda.max_wait_ms) == (256, 65536, 2, 5.0)
    assert (cuda.watchdog_s, cuda.gather) == (defaults.watchdog_s, defaults.gather)  # not in the mapping


def test_run_config_holds_the_knobs_with_the_dataclasss_defaults():
    run_fields = {f.name: f for f in fields(RunConfig)}
    for f in fields(SUTOptions):
        assert run_fields[f.name].default == f.default, f.name
        assert type(run_fields[f.name].default) is type(f.default), f.name
    assert RunConfig().sut_options() == SUTOptions()  # constructed directly: no device layer


def test_every_knob_is_one_flag_typed_like_its_default_with_each_devices_default(parser):
    actions = {a.dest: a for a in parser._actions}
    for name in KNOBS:
        action = actions[name]
        assert action.option_strings == [f"--{name}"] and action.default is None, name
        assert action.type is type(getattr(SUTOptions, name)), name
        for kind in DEVICE_OPTIONS:
            shown = f"{getattr(SUTOptions.for_device(kind), name):g} on {kind}"
            assert shown in action.help, (name, action.help)
    assert "(default 32 on cpu, 256 on cuda)" in actions["max_batch"].help
    assert "4096 on cpu, 65536 on cuda, less for larger encoders" in actions["token_budget"].help


def test_flags_override_every_layer_including_zero(parser):
    cfg = _from_flags(
        parser,
        "--device",
        "cuda",
        "--token_budget",
        "0",
        "--watchdog_s",
        "0",
        "--max_wait_ms",
        "0.5",
        "--workers",
        "3",
    )
    opts = cfg.sut_options()
    assert (opts.token_budget, opts.watchdog_s, opts.max_wait_ms, opts.workers) == (0, 0.0, 0.5, 3)
    assert opts.max_batch == 256  # the device's, not overridden
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        _from_flags(parser, "--workers", "0")


def test_layered_defaults_are_the_device_options_with_the_encoders_changes():
    assert RunConfig.layered_defaults("cpu", "tiny") == asdict(SUTOptions())
    assert RunConfig.layered_defaults("cuda:1", "tiny") == asdict(SUTOptions.for_device("cuda"))
    large = RunConfig.layered_defaults("cpu", "large")
    assert large == {**asdict(SUTOptions()), "token_budget": 2048, "batch_overhead_tokens": 16}
    assert RunConfig.layered_defaults("cuda", "base")["batch_overhead_tokens"] == 4096  # CPU only


def test_with_ray_the_sut_gets_one_thread_per_batch_in_flight():
    opts = RunConfig(executor="ray", workers=3, ray_inflight=2, max_batch=8).sut_options()
    assert asdict(opts) == {**asdict(SUTOptions()), "workers": 6, "max_batch": 8}


def test_the_docs_table_of_defaults_is_the_dataclasss():
    text = (REPO / "docs" / "running.md").read_text()
    rows = {}
    for line in text.split("**Scheduling defaults.**", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `--"):
            rows[cells[0].strip("`-")] = (float(cells[1]), float(cells[2]))
    assert list(rows) == KNOBS
    for name, (cpu, cuda) in rows.items():
        assert (cpu, cuda) == tuple(getattr(SUTOptions.for_device(k), name) for k in ("cpu", "cuda"))
