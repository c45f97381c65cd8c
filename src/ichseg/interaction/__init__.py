"""Interaction: prompts, hint maps, simulated prompts for training, scribble robot, simulated user.

Layout conventions: masks and volumes are ``(Z, Y, X)`` arrays (``Volume.zyx()``); prompts are
stored in voxel indices of that grid (with a :class:`GridRef`); hint maps are ``(2, Z, Y, X)``
with channel :data:`HINT_POSITIVE` = 0 (hemorrhage) and :data:`HINT_NEGATIVE` = 1 (background).
"""

from ichseg.interaction.hints import (
    HINT_CHANNELS,
    HINT_NEGATIVE,
    HINT_POSITIVE,
    downsample_hints,
    rasterize_prompts,
    rasterize_slice,
)
from ichseg.interaction.point_sampler import (
    choose_prompt_slice,
    sample_points_2d,
    simulate_training_prompts,
)
from ichseg.interaction.previous_mask import PreviousMaskMode, synthesize_previous_mask
from ichseg.interaction.prompts import (
    Click,
    Click2D,
    GridRef,
    InteractionRound,
    Prompt,
    Prompt2D,
    PromptSet,
    Scribble,
    Scribble2D,
    WorldPrompt,
    convert_prompt,
    prompt_from_dict,
    prompt_from_world,
    prompt_to_world,
    rescale_prompt,
    validate,
)
from ichseg.interaction.scribble_robot import ScribbleRobot
from ichseg.interaction.simulated_user import (
    ClinicianTurn,
    SimulatedClinician,
    band_slices,
    largest_area_slice,
    worst_slice,
)

__all__ = [
    "HINT_CHANNELS",
    "HINT_NEGATIVE",
    "HINT_POSITIVE",
    "Click",
    "Click2D",
    "ClinicianTurn",
    "GridRef",
    "InteractionRound",
    "PreviousMaskMode",
    "Prompt",
    "Prompt2D",
    "PromptSet",
    "Scribble",
    "Scribble2D",
    "ScribbleRobot",
    "SimulatedClinician",
    "WorldPrompt",
    "band_slices",
    "choose_prompt_slice",
    "convert_prompt",
    "downsample_hints",
    "largest_area_slice",
    "prompt_from_dict",
    "prompt_from_world",
    "prompt_to_world",
    "rasterize_prompts",
    "rasterize_slice",
    "rescale_prompt",
    "sample_points_2d",
    "simulate_training_prompts",
    "synthesize_previous_mask",
    "validate",
    "worst_slice",
]
