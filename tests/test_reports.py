"""reports/: every figure comes from a committed command or is marked as a retired script's output."""

import re

from bench.cli import COMMANDS as BENCH
from common.paths import REPO
from research.cli import COMMANDS as RESEARCH

CITED = re.compile(r"reports/scripts/([\w.]+\.(?:py|sh))")
RETIRED = re.compile(r"git show ([0-9a-f]{7,40}):reports/scripts/([\w.]+\.(?:py|sh))")
# research/ and bench/ (the harness-efficiency benchmarks): their modules and front-door commands
PACKAGES = {"research": RESEARCH, "bench": BENCH}
PACKAGE_CITED = re.compile(r"\b(research|bench)/(\w+\.py)|python -m (research|bench) (\w+)")
PACKAGE_RETIRED = re.compile(r"git show [0-9a-f]{7,40}:(research|bench)/(\w+\.py)")


def test_a_cited_report_script_exists_or_is_marked_retired_with_its_commit():
    """A script that left the repository is cited with the commit that still holds it (`git show
    <sha>:reports/scripts/<name>`) in the same file, so its committed figures keep their source."""
    texts = {p: p.read_text() for p in [*REPO.glob("docs/*.md"), *(REPO / "reports").rglob("*.md")]}
    cited = {(p, name) for p, text in texts.items() for name in CITED.findall(text)}
    missing = {(p, n) for p, n in cited if not (REPO / "reports" / "scripts" / n).is_file()}
    unmarked = [
        f"{p.relative_to(REPO)}: {n}"
        for p, n in sorted(missing)
        if n not in {name for _, name in RETIRED.findall(texts[p])}
    ]
    assert unmarked == []
    # the retired ones this change removed, each still cited where its figures are
    assert {"same_graph_speed.py", "xnli_epochs.py", "mutation_bug_checks.sh", "server_knobs.sh"} <= {
        n for _, n in missing
    }


def test_a_cited_research_module_or_command_exists_or_is_marked_retired_with_its_commit():
    """A research/ or bench/ module, or a `python -m research` or `python -m bench` command, that left
    the repository is cited with the commit that still holds its code (`git show
    <sha>:research/<name>.py`) in the same file."""
    unmarked = []
    for path in [*REPO.glob("docs/*.md"), *(REPO / "reports").rglob("*.md"), REPO / "README.md"]:
        text = path.read_text()
        retired = set(PACKAGE_RETIRED.findall(text))
        for where, module, runner, command in PACKAGE_CITED.findall(text):
            package, name = (where, module) if module else (runner, f"{command}.py")
            known = (REPO / package / name).is_file() if module else command in PACKAGES[package]
            if not known and (package, name) not in retired:
                unmarked.append(f"{path.relative_to(REPO)}: {package} {module or command}")
    assert unmarked == []
    # the retired commands this change removed, each cited where its figures or its successor are
    speed = (REPO / "reports" / "speed.md").read_text()
    assert "python -m research speed" in speed and "git show e226239:research/speed.py" in speed
