"""Typed training configuration, loadable from and saved to YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ichseg.errors import ConfigError
from ichseg.options import config_from_options
from ichseg.training.common import FoldConfig
from ichseg.training.data import SamplerConfig
from ichseg.training.iterative import IterativeConfig
from ichseg.training.losses import LossWeights


@dataclass
class TrainConfig(FoldConfig):
    """Everything a training run needs; stored next to its checkpoints as ``config.yaml``
    (``to_dict`` / ``from_dict`` / ``save`` / ``load`` from :class:`YamlConfig`)."""

    #: the fields of :class:`FoldConfig` first (data, out, model, ... splits_file)
    out: str = "runs/hpinet-lite"
    model: str = "hpinet"
    min_hemorrhage_slices: int = 1  #: the paper's filter, counted on the whole scan
    window: str = "brain"
    max_steps: int = 2000
    lr: float = 1e-5
    weight_decay: float = 1e-7
    loss: LossWeights = field(default_factory=LossWeights)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    iterative: IterativeConfig = field(default_factory=IterativeConfig)
    #: validation: rounds of full simulated sessions per case (0: one fixed slice sample)
    val_rounds: int = 0
    seed: int = 0
    log_every: int = 10
    val_every: int = 200
    #: validate once before the first step (a warm start's own score: best.pt then only changes
    #: for a checkpoint that beats it)
    val_at_start: bool = False
    val_cases: int | None = None  #: limit validation cases (None = all)
    #: a domain-shifted copy of the validation cases (a dict of
    #: :class:`ichseg.data.domain.DomainRandomization` fields, drawn once per case with a fixed
    #: seed; ``None``: off). With it (and ``val_rounds`` > 0) the selection metric ``val_dice``
    #: is the mean of the clean (``val_dice_clean``) and shifted (``val_dice_shifted``) Dice.
    val_shifted: dict[str, Any] | None = None
    ckpt_every: int = 50
    patience: int | None = None  #: stop after this many validations without improvement
    amp: bool = False  #: bf16 autocast on CPU, fp16 + GradScaler on CUDA
    grad_checkpointing: bool = False
    grad_clip: float | None = 1.0
    device: str = "auto"
    num_threads: int | None = None
    cache_dir: str | None = None  #: where prepared cases are cached (default ``<out>/cache``)
    init_from: str | None = None  #: warm start from matching weights of this checkpoint

    def validate(self) -> None:
        if not self.data:
            raise ConfigError("training needs --data (a dataset folder)")
        if not 0 <= self.fold < self.folds:
            raise ConfigError(f"fold {self.fold} is outside 0..{self.folds - 1}")
        if self.max_steps < 1 or self.lr <= 0:
            raise ConfigError("max_steps must be >= 1 and lr > 0")
        if self.val_shifted is not None:
            if self.val_rounds < 1:
                raise ConfigError("val_shifted needs val_rounds >= 1 (interactive validation)")
            from ichseg.data.domain import DomainRandomization

            try:
                DomainRandomization(**self.val_shifted)
            except TypeError as exc:
                raise ConfigError(f"val_shifted: {exc}") from None

    @classmethod
    def _nested(cls, data: dict[str, Any]) -> dict[str, Any]:
        if isinstance(data.get("loss"), dict):
            data["loss"] = LossWeights(**data["loss"])
        elif isinstance(data.get("loss"), str):
            data["loss"] = LossWeights.preset(data["loss"])
        if isinstance(data.get("sampler"), dict):
            data["sampler"] = config_from_options(SamplerConfig, data["sampler"], "sampler")
        if isinstance(data.get("iterative"), dict):
            data["iterative"] = config_from_options(IterativeConfig, data["iterative"], "iterative")
        return data
