"""Patient-wise k-fold cross-validation splits with an inner validation split per fold.

All scans of a patient land in the same fold, so a patient is never in both training and test
data. Each case is in exactly one test fold. Inside each fold, a fraction of the *training
patients* (default 0.2) is held out as validation for model selection (the ICH-HPINet code
selected models on the test fold; we do not). Splits are deterministic for a given seed and set of
case/patient ids (independent of input order) and are stored as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ichseg.errors import ConfigError

SPLITS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Fold:
    """Case ids of one fold: train (model fitting), val (model selection), test (reporting)."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def train_val(self) -> tuple[str, ...]:
        return self.train + self.val


@dataclass
class Splits:
    """k patient-wise folds of a dataset, with the parameters that produced them."""

    dataset: str
    k: int
    seed: int
    val_fraction: float
    folds: list[Fold]
    patients: dict[str, str] = field(default_factory=dict)  #: case_id -> patient_id

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return len(self.folds)

    def fold(self, index: int) -> Fold:
        if not 0 <= index < len(self.folds):
            raise ConfigError(f"fold {index} does not exist (have folds 0..{len(self.folds) - 1})")
        return self.folds[index]

    @property
    def case_ids(self) -> list[str]:
        return sorted(c for f in self.folds for c in f.test)

    def validate(self) -> None:
        """Raise :class:`ConfigError` unless folds are consistent and patient-disjoint."""
        if len(self.folds) != self.k:
            raise ConfigError(f"splits declare k={self.k} but hold {len(self.folds)} folds")
        tested: dict[str, int] = {}
        for f in self.folds:
            for c in f.test:
                if c in tested:
                    raise ConfigError(
                        f"case {c!r} is in the test set of folds {tested[c]} and {f.index}"
                    )
                tested[c] = f.index
        all_cases = set(tested)
        for f in self.folds:
            parts = {"train": set(f.train), "val": set(f.val), "test": set(f.test)}
            if (
                parts["train"] & parts["val"]
                or parts["train"] & parts["test"]
                or parts["val"] & parts["test"]
            ):
                raise ConfigError(f"fold {f.index}: train/val/test overlap")
            if set().union(*parts.values()) != all_cases:
                raise ConfigError(f"fold {f.index}: train+val+test is not the full case list")
            if self.patients:
                owner = {}
                for name, ids in parts.items():
                    for c in ids:
                        p = self.patients.get(c, c)
                        if owner.setdefault(p, name) != name:
                            raise ConfigError(
                                f"fold {f.index}: patient {p!r} is in both {owner[p]} and {name}"
                            )

    # --- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": SPLITS_FORMAT_VERSION,
            "dataset": self.dataset,
            "k": self.k,
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "patients": dict(sorted(self.patients.items())),
            "folds": [
                {"fold": f.index, "train": list(f.train), "val": list(f.val), "test": list(f.test)}
                for f in self.folds
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Splits:
        try:
            folds = [
                Fold(
                    int(f["fold"]),
                    tuple(str(c) for c in f["train"]),
                    tuple(str(c) for c in f["val"]),
                    tuple(str(c) for c in f["test"]),
                )
                for f in data["folds"]
            ]
            return cls(
                dataset=str(data["dataset"]),
                k=int(data["k"]),
                seed=int(data["seed"]),
                val_fraction=float(data["val_fraction"]),
                folds=folds,
                patients={str(a): str(b) for a, b in dict(data.get("patients", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed splits data: {type(exc).__name__}: {exc}") from exc

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return p

    @classmethod
    def from_json(cls, path: str | Path) -> Splits:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{p}: splits file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{p}: not a readable splits JSON file ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a JSON object")
        return cls.from_dict(data)


def _cases_and_patients(
    source: Any, patient_ids: Mapping[str, str] | Sequence[str] | None
) -> tuple[list[str], dict[str, str], str]:
    name = str(getattr(source, "name", "cases"))
    if hasattr(source, "cases"):
        case_ids = [c.case_id for c in source.cases]
        patients = {c.case_id: c.patient_id or c.case_id for c in source.cases}
    else:
        case_ids = [str(c) for c in source]
        patients = {c: c for c in case_ids}
    if len(set(case_ids)) != len(case_ids):
        dup = sorted({c for c in case_ids if case_ids.count(c) > 1})
        raise ConfigError(f"duplicate case ids: {dup[:10]}")
    if patient_ids is not None:
        if isinstance(patient_ids, Mapping):
            missing = [c for c in case_ids if c not in patient_ids]
            if missing:
                raise ConfigError(f"patient_ids lacks case(s) {missing[:10]}")
            patients = {c: str(patient_ids[c]) for c in case_ids}
        else:
            pids = [str(p) for p in patient_ids]
            if len(pids) != len(case_ids):
                raise ConfigError(f"{len(pids)} patient ids for {len(case_ids)} cases")
            patients = dict(zip(case_ids, pids, strict=True))
    return case_ids, patients, name


def make_splits(
    dataset_or_case_ids: Any,
    k: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
    patient_ids: Mapping[str, str] | Sequence[str] | None = None,
    *,
    name: str | None = None,
) -> Splits:
    """Patient-wise ``k``-fold splits of a :class:`~ichseg.data.dataset.Dataset` or case ids.

    Patients are shuffled with ``seed`` and assigned (largest patient first) to the fold with the
    fewest cases, which keeps folds balanced in cases. For each fold, ``round(val_fraction *
    n_train_patients)`` training patients (at least 1 when ``val_fraction > 0``) become validation.
    ``patient_ids`` (mapping or sequence aligned with the case ids) overrides the dataset's.
    """
    if k < 2:
        raise ConfigError(f"k must be at least 2, got {k}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    case_ids, patients, ds_name = _cases_and_patients(dataset_or_case_ids, patient_ids)
    groups: dict[str, list[str]] = {}
    for c in sorted(case_ids):
        groups.setdefault(patients[c], []).append(c)
    names = sorted(groups)
    if len(names) < k:
        raise ConfigError(f"{len(names)} patient(s) cannot be split into k={k} folds")
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    order = sorted(range(len(shuffled)), key=lambda i: (-len(groups[shuffled[i]]), i))
    fold_patients: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for i in order:
        p = shuffled[i]
        f = min(range(k), key=lambda j: (sizes[j], j))
        fold_patients[f].append(p)
        sizes[f] += len(groups[p])

    folds: list[Fold] = []
    for f in range(k):
        train_patients = sorted(p for j in range(k) if j != f for p in fold_patients[j])
        n_val = round(val_fraction * len(train_patients))
        if val_fraction > 0:
            n_val = max(n_val, 1)
        n_val = min(n_val, len(train_patients) - 1)
        frng = np.random.default_rng([seed, f])
        val_patients = {train_patients[i] for i in frng.permutation(len(train_patients))[:n_val]}

        def cases_of(ps: Iterable[str]) -> tuple[str, ...]:
            return tuple(sorted(c for p in ps for c in groups[p]))

        folds.append(
            Fold(
                f,
                train=cases_of(p for p in train_patients if p not in val_patients),
                val=cases_of(val_patients),
                test=cases_of(fold_patients[f]),
            )
        )
    return Splits(name or ds_name, k, seed, float(val_fraction), folds, patients)
