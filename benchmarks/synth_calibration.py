"""Compare the synthetic phantoms' statistics with real head-CT statistics.

Generates ``--cases`` phantoms (full 512x512x32 by default; ``--inplane 256`` halves the in-plane
resolution while keeping the physical size and spacing of the head), measures lesion volume,
components, slices with hemorrhage, largest cross-section, extent, brain and hematoma HU and local
noise, and writes ``benchmarks/results/synth_calibration.md`` (+ ``.json``) with the real values of
``/work/shared/data/calibration.md`` beside the synthetic ones.

    .venv/bin/python benchmarks/synth_calibration.py --cases 100 --seed 0
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ichseg.data.synthetic import GENERATOR_VERSION, PhantomConfig, Tissue, generate_case
from ichseg.data.synthetic_stats import mask_stats, median_local_noise

RESULTS = Path(__file__).resolve().parent / "results"

#: Real statistics from calibration.md (percentiles 5/25/50/75/95 unless noted).
REAL: dict[str, Any] = {
    "volume_ml": [0.30, 1.67, 6.3, 15.0, 45.7],
    "components": [1, 1, 1, 3, 7],
    "slices": [1, 3, 6, 8, 13],
    "max_cross_section_mm2": [37, 144, 387, 759, 1600],
    "extent": [0.02, 0.09, 0.28, 0.41, 0.65],
    "frac_under_1ml": 0.19,
    "frac_over_30ml": 0.13,
    "frac_multi_component": 0.38,
    "brain_hu_1_5_25_50_75_95_99": [3, 11, 24, 29, 34, 48, 80],
    "hematoma_hu": [43, 58, 66, 71, 78],
    "local_noise_hu_median": 2.5,
    "inplane_spacing_mm": [0.44, 0.49, 0.49, 0.49, 0.50],
    "slice_spacing_mm": [4.1, 5.0, 5.0, 5.3, 5.6],
}
P5 = [5, 25, 50, 75, 95]
P7 = [1, 5, 25, 50, 75, 95, 99]


def pct(values: list[float] | np.ndarray, q: list[int]) -> list[float]:
    a = np.asarray(values, dtype=np.float64)
    return [float(v) for v in np.percentile(a, q)] if a.size else [float("nan")] * len(q)


def fmt(values: list[float], digits: int = 2) -> str:
    return " / ".join(f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}" for v in values)


def run(n_cases: int, seed: int, inplane: int, slices: int) -> dict[str, Any]:
    cfg = PhantomConfig.for_shape((inplane, inplane, slices)) if inplane != 512 else PhantomConfig()
    per_case: list[dict[str, Any]] = []
    brain_samples: list[np.ndarray] = []
    blood_samples: list[np.ndarray] = []
    blood_iph_ivh: list[np.ndarray] = []
    noise: list[float] = []
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for index in range(n_cases):
        case = generate_case(cfg, seed, index, tissue_map=True)
        assert case.tissue is not None
        img = case.image.array
        tis = case.tissue.array
        sp = case.image.spacing
        brain = np.isin(tis, [Tissue.BRAIN, Tissue.CSF, Tissue.DURA, Tissue.CALCIFICATION])
        brain = ndi.binary_erosion(brain, structure=np.ones((5, 5, 1), dtype=bool))  # strip rim
        vals = img[brain]
        brain_samples.append(rng.choice(vals, size=min(vals.size, 20000), replace=False))
        noise.append(median_local_noise(img, tis == Tissue.BRAIN))
        st = mask_stats(case.mask.array, sp)
        row: dict[str, Any] = {
            "index": index,
            "spacing": list(sp),
            "subtypes": sorted({e["subtype"] for e in case.info["lesions"]}),
        }
        if st is not None:
            row.update(vars(st))
            blood = img[case.mask.array > 0]
            blood_samples.append(rng.choice(blood, size=min(blood.size, 5000), replace=False))
            sub = case.subtype_mask.array
            sel = img[(sub == 2) | (sub == 3)]
            if sel.size:
                blood_iph_ivh.append(rng.choice(sel, size=min(sel.size, 5000), replace=False))
        per_case.append(row)
        done = index + 1
        if done % 10 == 0 or done == n_cases:
            el = time.perf_counter() - t0
            print(f"  {done}/{n_cases} cases, {el:.0f} s", file=sys.stderr, flush=True)
    pos = [r for r in per_case if "volume_ml" in r]
    vol = [r["volume_ml"] for r in pos]
    syn = {
        "volume_ml": pct(vol, P5),
        "components": pct([r["components"] for r in pos], P5),
        "slices": pct([r["slices"] for r in pos], P5),
        "max_cross_section_mm2": pct([r["max_cross_section_mm2"] for r in pos], P5),
        "extent": pct([r["extent"] for r in pos], P5),
        "frac_under_1ml": float(np.mean(np.asarray(vol) < 1.0)) if vol else float("nan"),
        "frac_over_30ml": float(np.mean(np.asarray(vol) > 30.0)) if vol else float("nan"),
        "frac_multi_component": float(np.mean([r["components_over_0_1ml"] > 1 for r in pos]))
        if pos
        else float("nan"),
        "brain_hu_1_5_25_50_75_95_99": pct(np.concatenate(brain_samples), P7),
        "hematoma_hu": pct(np.concatenate(blood_samples), P5) if blood_samples else [],
        "hematoma_hu_iph_ivh": pct(np.concatenate(blood_iph_ivh), P5) if blood_iph_ivh else [],
        "local_noise_hu_median": float(np.nanmedian(noise)),
        "inplane_spacing_mm": pct([r["spacing"][0] for r in per_case], P5),
        "slice_spacing_mm": pct([r["spacing"][2] for r in per_case], P5),
        "positive_cases": len(pos),
        "hemorrhage_free_cases": n_cases - len(pos),
    }
    subtype_counts: dict[str, int] = {}
    for r in pos:
        for s in r["subtypes"]:
            subtype_counts[s] = subtype_counts.get(s, 0) + 1
    syn["cases_with_subtype"] = subtype_counts
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "cases": n_cases,
        "shape": list(cfg.shape),
        "seconds": time.perf_counter() - t0,
        "synthetic": syn,
        "real": REAL,
        "per_case": per_case,
    }


def markdown(res: dict[str, Any], command: str) -> str:
    s, r = res["synthetic"], res["real"]
    rows = [
        ("Lesion volume per scan (mL), p5/25/50/75/95", "volume_ml", 2),
        ("Connected components per scan, p5/25/50/75/95", "components", 0),
        ("Slices with hemorrhage, p5/25/50/75/95", "slices", 0),
        ("Largest cross-section (mm^2), p5/25/50/75/95", "max_cross_section_mm2", 0),
        ("Extent (voxels / bbox voxels), p5/25/50/75/95", "extent", 2),
        (
            "Brain HU (skull-stripped, outside lesion), p1/5/25/50/75/95/99",
            "brain_hu_1_5_25_50_75_95_99",
            0,
        ),
        ("Hematoma HU, p5/25/50/75/95 (synthetic: all subtypes)", "hematoma_hu", 0),
        ("In-plane spacing (mm), p5/25/50/75/95", "inplane_spacing_mm", 2),
        ("Slice spacing (mm), p5/25/50/75/95", "slice_spacing_mm", 2),
    ]
    out = [
        "# Synthetic phantoms vs real head CT: calibration",
        "",
        f"Generator {res['generator_version']}, seed {res['seed']}, {res['cases']} cases of shape "
        f"{'x'.join(map(str, res['shape']))} ({s['positive_cases']} with hemorrhage, "
        f"{s['hemorrhage_free_cases']} hemorrhage-free); {res['seconds']:.0f} s on "
        f"{platform.processor() or platform.machine()} ({platform.python_implementation()} "
        f"{platform.python_version()}).",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        "Real values: `/work/shared/data/calibration.md` (525 real hematoma masks, IPH/IVH, "
        "HemSeg-500 labels on RSNA scans; HU from one real scan). Lesion statistics are over "
        "scans with hemorrhage.",
        "",
        "| Statistic | Real | Synthetic |",
        "|---|---|---|",
    ]
    for label, key, d in rows:
        out.append(f"| {label} | {fmt(r[key], d)} | {fmt(s[key], d)} |")
    out.append(
        f"| Hematoma HU, IPH + IVH voxels only | {fmt(r['hematoma_hu'], 0)} | "
        f"{fmt(s['hematoma_hu_iph_ivh'], 0)} |"
    )
    for label, key in (
        ("Scans with < 1 mL", "frac_under_1ml"),
        ("Scans with > 30 mL", "frac_over_30ml"),
        ("Scans with > 1 component of >= 0.1 mL", "frac_multi_component"),
    ):
        out.append(f"| {label} | {r[key]:.0%} | {s[key]:.0%} |")
    out.append(
        f"| Local noise, median std in 5x5 brain patches (HU) | ~{r['local_noise_hu_median']} | "
        f"{s['local_noise_hu_median']:.2f} |"
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s["cases_with_subtype"].items()))
    out += [
        "",
        f"Cases containing each subtype (synthetic): {counts}.",
        "",
        "Notes: the synthetic hematoma HU include SAH in thin sulci and thin SDH (partial volume "
        "lowers their density); the real HU come from one extra-axial hematoma. Brain HU are "
        "taken over voxels labelled brain, CSF, dura or calcification in the phantom's tissue "
        "map, eroded by 2 pixels in-plane (skull stripping).",
        "",
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inplane", type=int, default=512, help="in-plane size (512 = full)")
    ap.add_argument("--slices", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS / "synth_calibration")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    res = run(args.cases, args.seed, args.inplane, args.slices)
    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth_calibration.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    text = markdown(res, command.strip())
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
