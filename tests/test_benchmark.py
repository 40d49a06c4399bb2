"""The SUT benchmark's report: verdicts against the issue's targets, figures carried into the table."""

from harness.benchmark import render


def row(encoder: str, **ratios) -> dict:
    base = {
        "encoder": encoder, "model_kind": "tiny" if encoder == "tiny" else "random",
        "plain_loop_sps": [100.0, 102.0], "offline_sps": 97.0, "offline_valid": True,
        "reference_sps": 40.0, "bare_single_p90_ms": 4.0, "singlestream_p90_ms": 4.2,
        "server_runs": [{"fraction": 0.9, "target_qps": 87.3, "valid": True, "p99_ms": 55.0}],
        "offline_efficiency": 0.96, "vs_reference": 2.43, "server_vs_offline": 0.9,
        "singlestream_ratio": 1.05, "errors": [],
    }  # fmt: skip
    return {**base, **ratios}


def verdicts(text: str) -> dict[tuple[str, str], str]:
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1] in ("offline_efficiency", "vs_reference",
                                            "server_vs_offline", "singlestream_ratio"):  # fmt: skip
            out[(cells[0].split()[0], cells[1])] = cells[4]
    return out


def test_verdicts_follow_the_targets_per_encoder():
    text = render([row("tiny"), row("base", offline_efficiency=0.93, singlestream_ratio=1.2)], "cmd")
    v = verdicts(text)
    assert v[("tiny", "offline_efficiency")] == "met"  # 0.96 >= 0.95
    assert v[("base", "offline_efficiency")] == "MISSED"  # 0.93 < 0.95
    assert v[("tiny", "vs_reference")] == "met"  # 2.43 >= 2 for tiny
    assert v[("base", "vs_reference")] == "MISSED"  # 2.43 < 3 for the base shape
    assert v[("tiny", "singlestream_ratio")] == "met" and v[("base", "singlestream_ratio")] == "MISSED"
    assert "LoadGen 97.0 / plain loop [100.0, 102.0] samples/s" in text
    assert "87.3 QPS VALID p99 55.0 ms" in text
    assert "base (random)" in text and "Command: `cmd`" in text


def test_missing_ratio_and_errors_are_reported_not_hidden():
    text = render([row("tiny", server_vs_offline=None, errors=["exit 2, see x.log"])], "cmd")
    assert verdicts(text)[("tiny", "server_vs_offline")] == "n/a"
    assert "exit 2, see x.log" in text
