"""The tables of ``pretraining_experiment.py``: one run's arms, where their continuations leave the
targets, its privacy audit (``--audit``), and several runs (seeds) of one setting side by side.

Each row is an arm of ``results.json`` (see ``pretraining_experiment.run_arm``); the first row of
a run is its standard arm, the reference for validation loss. The tables of a finished run, from
its result file:

    python experiments/pretraining_report.py experiments/results/pretraining-quick
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _audit_common import audit_tables  # noqa: E402  (experiments/ is scripts, not a package)

#: the suffix of a masked arm trained for the standard arm's epochs (``--equal-input``)
EQUAL_INPUT = ", 1 epoch"


def arm_slug(name: str) -> str:
    """The arm's folder name: "goldfish k=4, 1 epoch" -> "goldfish-k4-1-epoch"."""
    return name.replace(EQUAL_INPUT, "-1-epoch").replace(" ", "-").replace("=", "")


def table(rows: list[dict[str, Any]]) -> str:
    standard = rows[0]["eval_loss"]
    lines = [
        "| arm | drop rate | trained tokens | supervised | val loss | targets: exact | token match | Rouge-L p10 / median / p90 / max | controls: exact | Rouge-L p10 / median / p90 / max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t, c = row["targets"], row["controls"]
        dist = lambda m: " / ".join(f"{m[f'rouge_l_{q}']:.3f}" for q in ("p10", "median", "p90", "max"))  # noqa: E731
        lines.append(
            f"| {row['arm']} | {row['drop_rate']:.1%} | {row['trained_tokens']:,} | {row['supervised_tokens']:,} | "
            f"{row['eval_loss']:.4f} ({row['eval_loss'] / standard - 1:+.2%}) | {t['exact_matches']}/{t['documents']} | {t['token_match']:.3f} | {dist(t)} | "
            f"{c['exact_matches']}/{c['documents']} | {dist(c)} |"
        )
    return "\n".join(lines)


def run_tables(rows: list[dict[str, Any]]) -> str:
    """Every table of one run: its arms, where their continuations leave the targets, and the audit when it was run."""
    tables = [table(rows), divergence_table(rows)]
    if all("audit" in row for row in rows):
        tables.append(audit_tables(rows))
    return "\n\n".join(tables)


def divergence_table(rows: list[dict[str, Any]]) -> str:
    """Where the continuations leave the targets, against each arm's mask."""
    lines = [
        "| arm | targets: verbatim run (ids) | first wrong id on a dropped position (chance) | Rouge-L after it, median | controls: Rouge-L after the first wrong id, median |"
        " teacher-forced accuracy at dropped positions: targets / controls | at kept positions: targets / controls |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        t, c = row["targets"], row["controls"]
        on_drop = "-" if not t.get("diverged_on_mask") else (
            f"{round(t['divergence_at_drop'] * t['diverged_on_mask'])}/{t['diverged_on_mask']} ({t['divergence_at_drop_chance']:.1%})")  # fmt: skip
        after = lambda m: "-" if m.get("rouge_l_after_divergence_median") is None else f"{m['rouge_l_after_divergence_median']:.3f}"  # noqa: E731
        forced = [
            f"{t[key]:.3f} / {c[key]:.3f}" if t.get(key) is not None else "-" for key in ("forced_accuracy_dropped", "forced_accuracy_kept")
        ]
        lines.append(f"| {row['arm']} | {t['verbatim_run']:.1f} | {on_drop} | {after(t)} | {after(c)} | {forced[0]} | {forced[1]} |")
    return "\n".join(lines)


def summarise(works: list[Path]) -> str:
    """Several runs of one setting (seeds): per arm, validation loss against the same seed's standard arm,
    exact matches pooled, the per-run Rouge-L medians, and the first wrong ids pooled."""
    import numpy as np

    runs = [json.loads((w / "results.json").read_text(encoding="utf-8"))["arms"] for w in works]
    lines = [
        f"{len(runs)} runs: " + ", ".join(str(w) for w in works),
        "",
        "| arm | val loss vs standard: mean (min / max) | targets: exact | Rouge-L median: mean (min / max) | controls: Rouge-L median, mean |"
        " verbatim run (ids) | first wrong id on a dropped position (chance) | teacher-forced accuracy at dropped positions: targets / controls |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in [row["arm"] for row in runs[0]]:
        rows = [next(r for r in arms if r["arm"] == name) for arms in runs]
        losses = np.array([r["eval_loss"] / arms[0]["eval_loss"] - 1 for r, arms in zip(rows, runs)])
        medians = np.array([r["targets"]["rouge_l_median"] for r in rows])
        controls = np.mean([r["controls"]["rouge_l_median"] for r in rows])
        exact = f"{sum(r['targets']['exact_matches'] for r in rows)}/{sum(r['targets']['documents'] for r in rows)}"
        run = np.mean([r["targets"]["verbatim_run"] for r in rows])
        diverged = sum(r["targets"].get("diverged_on_mask") or 0 for r in rows)
        on_drop = "-" if not diverged else (
            f"{sum(round((r['targets']['divergence_at_drop'] or 0) * r['targets']['diverged_on_mask']) for r in rows)}/{diverged} "
            f"({np.mean([r['targets']['divergence_at_drop_chance'] for r in rows if r['targets']['diverged_on_mask']]):.1%})")  # fmt: skip
        forced = "-" if rows[0]["targets"].get("forced_accuracy_dropped") is None else " / ".join(
            f"{np.mean([r[which]['forced_accuracy_dropped'] for r in rows]):.3f}" for which in ("targets", "controls"))  # fmt: skip
        lines.append(
            f"| {name} | {losses.mean():+.2%} ({losses.min():+.2%} / {losses.max():+.2%}) | {exact} | "
            f"{medians.mean():.3f} ({medians.min():.3f} / {medians.max():.3f}) | {controls:.3f} | {run:.1f} | {on_drop} | {forced} |"
        )
    lines += [
        "",
        "Teacher-forced accuracy at dropped positions (positions), pooled over the runs, by where else in the document the id occurs:",
        "",
    ]
    lines.append(dropped_by_place_table(works, [row["arm"] for row in runs[0]]))
    return "\n".join(lines)


#: where else in its document a dropped position's true id occurs
PLACES = ("earlier", "only later", "nowhere else")


def dropped_by_place(works: list[Path], arm: str) -> dict[str, dict[str, list[int]]]:
    """Teacher-forced hits at dropped positions of the targets and the controls, pooled over runs and
    split by where else in the document the true id occurs: earlier (the model can copy it from
    its prefix), only later (a model that learned the document knows the id belongs to it, from
    positions where it was supervised), nowhere else. {which: {place: [right, positions]}}.

    Read from the memorisation reports each run keeps in the arm's run folder.
    """
    from goldfish_prep.train.data import load_documents

    slug = arm_slug(arm)
    counts = {which: {place: [0, 0] for place in PLACES} for which in ("targets", "controls")}
    for work in works:
        for which in counts:
            shards = work / f"shards-{which}-{slug}"
            report = work / f"run-{slug}" / f"memorization-{shards.name}.json"
            if not report.exists():
                continue
            ids = {d.doc_id: d.ids.tolist() for d in load_documents(shards)}
            for doc in json.loads(report.read_text(encoding="utf-8"))["documents"]:
                document = ids[doc["doc_id"]]
                start = len(document) - len(doc["suffix"])
                for j in doc["dropped"]:
                    at, token = start + j, document[start + j]
                    place = "earlier" if token in document[:at] else ("only later" if token in document[at + 1 :] else "nowhere else")
                    counts[which][place][0] += doc["teacher_forced"][j] == doc["suffix"][j]
                    counts[which][place][1] += 1
    return counts


def dropped_by_place_table(works: list[Path], arms: list[str]) -> str:
    """``dropped_by_place`` of each masked arm as a table: accuracy (positions), targets against controls."""
    lines = [
        "| arm | " + " | ".join(f"id {place}: targets / controls" for place in PLACES) + " |",
        "|---|" + "---|" * len(PLACES),
    ]
    for arm in arms:
        counts = dropped_by_place(works, arm)
        if not counts["targets"]["earlier"][1]:
            continue
        cells = []
        for place in PLACES:
            (a, n), (b, m) = counts["targets"][place], counts["controls"][place]
            cells.append(f"{a / n if n else 0:.3f} ({n}) / {b / m if m else 0:.3f} ({m})")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print the tables of finished pretraining_experiment.py runs from their results.json.")
    parser.add_argument("runs", type=Path, nargs="+", metavar="DIR", help="a run's folder; several: one table over them (seeds)")
    args = parser.parse_args(argv)
    if len(args.runs) > 1:
        print(summarise(args.runs))
        return
    results = json.loads((args.runs[0] / "results.json").read_text(encoding="utf-8"))
    print(run_tables(results["arms"]))
    print(f"\n{results['seconds']:.0f} s in all; setting {results['setting']}")


if __name__ == "__main__":
    main()
