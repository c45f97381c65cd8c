"""How the slice branch (SIM) of ICH-HPINet responds to prompts and to the previous-round mask.

Diagnoses the round-2+ plateau: on the largest hemorrhage slice of each case the SIM is run
under controlled inputs and the predicted area (relative to the GT area) and Dice are recorded.
A model that follows the user should give ~0 area with negative scribbles alone, keep a correct
previous mask (area ratio ~1) and shrink an over-segmented previous mask when negative scribbles
lie on its false positives.

Conditions (canonical pixels; the negative "ring" is 12 short strokes 8-12 px outside the GT):

* ``pos``            one positive stroke through the lesion centre, previous mask empty
* ``pos+neg``        the same plus the negative ring
* ``neg``            the negative ring alone
* ``prev=gt``        no prompts, previous mask = GT
* ``prev=dilated``   no prompts, previous mask = GT dilated by 6 network pixels
* ``pos+neg, prev=dilated``  the ring lies on the previous mask's false positives

Usage::

    python benchmarks/sim_prompt_response.py --data DIR --weights NAME=PATH [--weights ...]
        [--cases 12] [--out benchmarks/results/sim_prompt_response]
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from ichseg.data.dataset import open_dataset
from ichseg.interaction.hints import rasterize_prompts
from ichseg.interaction.prompts import Scribble
from ichseg.interaction.session import InteractiveSession
from ichseg.io.volume import to_canonical
from ichseg.models.registry import load_model

CONDITIONS = (
    "pos",
    "pos+neg",
    "neg",
    "prev=gt",
    "prev=dilated",
    "pos+neg, prev=dilated",
)


def _case_rows(model, case) -> dict[str, tuple[float, float]] | None:
    image = case.load_image()
    mask = case.load_mask(image)
    gt_c = to_canonical(mask)[0].zyx() > 0
    if not gt_c.any():
        return None
    session = InteractiveSession(model)
    session.set_volume(image)
    grid = session.engine.grid
    z = int(np.argmax(gt_c.sum((1, 2))))
    gt_model = grid.canonical_hints_to_model(np.stack([gt_c, gt_c]).astype(np.float32))[0] > 0.5
    ys, xs = np.nonzero(gt_c[z])
    cy, cx = int(np.rint(ys.mean())), int(np.rint(xs.mean()))
    pos = Scribble(z, [(cy, cx - 3), (cy, cx + 3)], True, 2.0)
    ring = ndi.binary_dilation(gt_c[z], iterations=12) & ~ndi.binary_dilation(gt_c[z], iterations=8)
    ry, rx = np.nonzero(ring)
    pick = np.linspace(0, len(ry) - 1, 12).astype(int)
    neg = [
        Scribble(z, [(int(ry[i]), int(rx[i])), (int(ry[i]) + 1, int(rx[i]) + 1)], False, 2.0)
        for i in pick
    ]
    gz = gt_model[z]
    zero = np.zeros(gz.shape, np.float32)
    dilated = ndi.binary_dilation(gz, iterations=6).astype(np.float32)
    inputs = {
        "pos": ([pos], zero),
        "pos+neg": ([pos, *neg], zero),
        "neg": (neg, zero),
        "prev=gt": ([], gz.astype(np.float32)),
        "prev=dilated": ([], dilated),
        "pos+neg, prev=dilated": ([pos, *neg], dilated),
    }
    img = session.engine.image[0, 0]
    out = {}
    for name, (prompts, prev) in inputs.items():
        hints = grid.canonical_hints_to_model(rasterize_prompts(prompts, gt_c.shape))
        h = torch.from_numpy(hints[:, [z]]).transpose(0, 1)
        with torch.no_grad():
            logits = model.run_sim(img[[z]][:, None], h, torch.from_numpy(prev)[None, None])
        pred = (torch.sigmoid(logits)[0, 0] >= 0.5).numpy()
        inter = float((pred & gz).sum())
        out[name] = (float(pred.sum()) / float(gz.sum()), 2 * inter / (pred.sum() + gz.sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--weights", action="append", required=True, help="NAME=PATH (repeatable)")
    ap.add_argument("--cases", type=int, default=12, help="hemorrhage cases to use")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/sim_prompt_response")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = open_dataset(args.data)
    results: dict[str, dict[str, dict[str, float]]] = {}
    used: list[str] = []
    for spec in args.weights:
        name, _, path = spec.partition("=")
        model, _ = load_model(path)
        model.eval()
        per: dict[str, list[tuple[float, float]]] = {c: [] for c in CONDITIONS}
        ids = []
        for case in ds.cases:
            if len(ids) >= args.cases:
                break
            rows = _case_rows(model, case)
            if rows is None:
                continue
            ids.append(case.case_id)
            for c, v in rows.items():
                per[c].append(v)
        used = ids
        results[name] = {
            c: {
                "area_ratio": float(np.mean([v[0] for v in per[c]])),
                "dice": float(np.mean([v[1] for v in per[c]])),
            }
            for c in CONDITIONS
        }
        print(name, json.dumps(results[name], indent=1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/sim_prompt_response.py " + " ".join(
        [
            f"--data {shlex.quote(args.data)}",
            *(f"--weights {shlex.quote(w)}" for w in args.weights),
            f"--cases {args.cases}",
        ]
    )
    (out / "results.json").write_text(
        json.dumps({"command": command, "cases": used, "results": results}, indent=1)
    )
    lines = [
        "# SIM response to prompts and to the previous-round mask",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Cases ({len(used)}): {', '.join(used)}. Largest hemorrhage slice of each; mean over "
        "cases. `area` = predicted area / GT area (1 is ideal; a model that reads negative strokes "
        "literally gives 0 for `neg`).",
        "",
        "| weights | " + " | ".join(f"{c}: area / Dice" for c in CONDITIONS) + " |",
        "|---|" + "---|" * len(CONDITIONS),
    ]
    for name, res in results.items():
        cells = [f"{res[c]['area_ratio']:.2f} / {res[c]['dice']:.3f}" for c in CONDITIONS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print((out / "report.md").read_text())


if __name__ == "__main__":
    main()
