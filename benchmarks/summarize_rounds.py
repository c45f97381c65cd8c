"""One table of per-round metrics from several ``ichseg evaluate`` output folders.

    python benchmarks/summarize_rounds.py RUN_DIR [RUN_DIR ...] --out table.md [--title T]

Each RUN_DIR holds ``table_rounds.csv`` and ``report.md`` (whose first code block is the command
that produced it); a row is labelled with the folder name.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _command(run: Path) -> str:
    text = (run / "report.md").read_text()
    start = text.index("```bash") + len("```bash")
    return text[start : text.index("```", start)].strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="Metrics after each round")
    ap.add_argument("--metrics", default="dice,hd95")
    args = ap.parse_args()
    metrics = args.metrics.split(",")
    lines = [f"# {args.title}", ""]
    commands = []
    for metric in metrics:
        header = None
        rows = []
        for run in args.runs:
            with (run / "table_rounds.csv").open() as fh:
                for r in csv.DictReader(fh):
                    if r["metric"] != metric:
                        continue
                    rounds = [k for k in r if k.startswith("round ")]
                    header = header or rounds
                    values = " | ".join(f"{float(r[k]):.3f}" for k in rounds)
                    rows.append(f"| {run.name} | {r['method']} | {values} |")
        if not rows:
            continue
        lines += [f"## {metric}", "", "| run | method | " + " | ".join(header) + " |"]
        lines += ["|---|---|" + "---|" * len(header), *rows, ""]
    for run in args.runs:
        commands.append(f"- `{run.name}`: `{_command(run)}`")
    lines += ["## Commands", "", *commands, ""]
    args.out.write_text("\n".join(lines))
    print(args.out)


if __name__ == "__main__":
    main()
