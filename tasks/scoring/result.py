"""What scoring returns, how it prints, and how it is written into a run folder."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ScoreResult:
    """One scored accuracy log.

    metrics:      everything (per-language numbers, counts, options), JSON-serialisable
    table_text:   the per-language table (what the script prints before the final line)
    final_line:   the one-line JSON the MLPerf submission checker reads (accuracy.txt's last line)
    predictions:  TyDiQA {qid: answer}, BUCC [(src_id, en_id, score)] mined above the threshold,
                  else None
    predictions_name: file name for the predictions in a run folder
    warnings:     partial coverage and similar (printed to stderr by the CLI)
    per_sample:   the unit scores behind the figure, for paired bootstraps (research/bootstrap.py):
                  {"statistic": "mean" | "f1_counts", "per_language": {lang: {"ids": [...],
                  "scores": [...]}}}. "mean": one score per unit (x100: 100 or 0 per XNLI sample, F1 x100
                  per TyDiQA question) whose mean per language is that language's figure; "f1_counts":
                  [correct, predicted, gold] per BUCC source sentence, F1 = 2 correct / (predicted +
                  gold) over summed counts. The task figure is the mean over languages either way.
    """

    metrics: dict[str, Any]
    table_text: str
    final_line: str
    predictions: object | None = None
    predictions_name: str = ""
    warnings: list[str] = field(default_factory=list)
    per_sample: dict[str, Any] | None = None

    @property
    def stdout_text(self) -> str:
        """Exactly what `python accuracy_<task>.py LOG` prints on stdout (= accuracy.txt)."""
        return f"{self.table_text}\n{self.final_line}\n"


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], average: Sequence[Any]) -> str:
    """A fixed-width text table: header, one row per language, a rule, then the average row.

    Floats print with 2 decimals (the precision XTREME reports).
    """

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    body = [[cell(v) for v in r] for r in [header, *rows, average]]
    widths = [max(len(r[c]) for r in body) for c in range(len(header))]
    lines = [
        "  ".join(
            v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in body
    ]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:-1], rule, lines[-1]])


PER_SAMPLE = "per_sample.json"  # ScoreResult.per_sample in a run folder
# its gzip copy: what a run folder kept in the repository holds (the plain file is not committed)
PER_SAMPLE_GZ = PER_SAMPLE + ".gz"


def gzip_fixed(raw: bytes) -> bytes:
    """`raw` gzip-compressed with no timestamp: the same bytes for the same content."""
    return gzip.compress(raw, compresslevel=9, mtime=0)


def keep_gzipped(folder: str | Path) -> Path | None:
    """Write `folder`/per_sample.json.gz from its per_sample.json; None where there is none."""
    source = Path(folder) / PER_SAMPLE
    if not source.is_file():
        return None
    target = source.with_name(PER_SAMPLE_GZ)
    target.write_bytes(gzip_fixed(source.read_bytes()))
    return target


def per_language_scores(
    language: Sequence[str], ids: Sequence[Any], scores: Sequence[Any], statistic: str = "mean"
) -> dict[str, Any]:
    """ScoreResult.per_sample from parallel sequences (one entry per scored unit)."""
    per: dict[str, dict[str, list]] = {}
    for lang, i, v in zip(language, ids, scores, strict=True):
        entry = per.setdefault(lang, {"ids": [], "scores": []})
        entry["ids"].append(i)
        entry["scores"].append(v)
    return {"statistic": statistic, "per_language": per}


def final_json(pairs: dict[str, Any]) -> str:
    """The final line: a JSON object with keys in the given order (the checker reads a prefix)."""
    return json.dumps(pairs)


def write_predictions(result: ScoreResult, path: Path) -> None:
    """TyDiQA predictions as SQuAD-style JSON {qid: text}; BUCC as `src_id TAB en_id` lines (XTREME)."""
    if isinstance(result.predictions, dict):
        path.write_text(
            json.dumps(result.predictions, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
    else:
        lines = [f"{s}\t{t}\n" for s, t, *_ in result.predictions]  # type: ignore[union-attr]
        path.write_text("".join(lines), encoding="utf-8")


def write_outputs(result: ScoreResult, out_dir: str | Path) -> dict[str, Path]:
    """Write accuracy.txt (the script's stdout), accuracy.json (all metrics), the predictions file
    and per_sample.json (the unit scores, ScoreResult.per_sample).

    Returns {"accuracy.txt": path, "accuracy.json": path, "predictions": path, "per_sample": path}
    (the last two when there are any).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"accuracy.txt": out / "accuracy.txt", "accuracy.json": out / "accuracy.json"}
    paths["accuracy.txt"].write_text(result.stdout_text, encoding="utf-8")
    paths["accuracy.json"].write_text(json.dumps(result.metrics, indent=1) + "\n", encoding="utf-8")
    if result.predictions is not None:
        paths["predictions"] = out / result.predictions_name
        write_predictions(result, paths["predictions"])
    if result.per_sample is not None:
        paths["per_sample"] = out / PER_SAMPLE
        paths["per_sample"].write_text(json.dumps(result.per_sample) + "\n", encoding="utf-8")
    return paths
