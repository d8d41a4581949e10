"""Multi-objective optimisation core: knows no speech, works on any model and any named losses.

See :mod:`osoup.moo.soup` for the training-loop contract.
"""
from osoup.moo.jd import JD_METHODS, JDWeighting, MissingDependencyError
from osoup.moo.levels import parse_levels
from osoup.moo.loss_weighting import DWA, UncertaintyWeighting
from osoup.moo.optim import split_optimizers
from osoup.moo.registry import WEIGHTINGS, make_weighting
from osoup.moo.schedule import PenaltySchedule
from osoup.moo.simplex import project_simplex
from osoup.moo.soup import RECIPES, Level, Soup, make_soup
from osoup.moo.weighting import MeanWeighting, MoDo, StaticWeighting, Weighting, entropy

__all__ = [
    "DWA",
    "JD_METHODS",
    "JDWeighting",
    "MissingDependencyError",
    "UncertaintyWeighting",
    "WEIGHTINGS",
    "make_weighting",
    "RECIPES",
    "Level",
    "MeanWeighting",
    "MoDo",
    "PenaltySchedule",
    "Soup",
    "StaticWeighting",
    "Weighting",
    "entropy",
    "make_soup",
    "parse_levels",
    "project_simplex",
    "split_optimizers",
]
