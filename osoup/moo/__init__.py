"""Multi-objective optimisation core: knows no speech, works on any model and any named losses.

See :mod:`osoup.moo.soup` for the training-loop contract and :mod:`osoup.moo.methods` for the
training methods (``make_soup``).
"""
from osoup.moo.conflict_score import conflict_scores
from osoup.moo.famo import FAMO
from osoup.moo.jd import JD_METHODS, JDWeighting, MissingDependencyError
from osoup.moo.jd_methods import NOT_WRAPPED
from osoup.moo.lambdas import Level
from osoup.moo.layout import ObjectiveLayout
from osoup.moo.levels import parse_levels
from osoup.moo.loss_weighting import DWA, IMTLL, UncertaintyWeighting
from osoup.moo.methods import METHODS, PENALISED_METHODS, default_penalties, make_soup
from osoup.moo.optim import split_optimizers
from osoup.moo.registry import DOUBLE_SAMPLED, LOSS_BASED, WEIGHTINGS, make_weighting
from osoup.moo.scalarizers import COSMOS, PBI, STCH, GeometricMean, RandomLossWeighting
from osoup.moo.schedule import PenaltySchedule
from osoup.moo.simplex import project_simplex
from osoup.moo.soup import Soup
from osoup.moo.weighting import MeanWeighting, MoDo, StaticWeighting, Weighting, entropy

__all__ = [
    "COSMOS",
    "DOUBLE_SAMPLED",
    "FAMO",
    "GeometricMean",
    "IMTLL",
    "LOSS_BASED",
    "NOT_WRAPPED",
    "PBI",
    "RandomLossWeighting",
    "STCH",
    "DWA",
    "JD_METHODS",
    "JDWeighting",
    "METHODS",
    "MissingDependencyError",
    "ObjectiveLayout",
    "PENALISED_METHODS",
    "UncertaintyWeighting",
    "WEIGHTINGS",
    "Level",
    "MeanWeighting",
    "MoDo",
    "PenaltySchedule",
    "Soup",
    "StaticWeighting",
    "Weighting",
    "conflict_scores",
    "default_penalties",
    "entropy",
    "make_soup",
    "make_weighting",
    "parse_levels",
    "project_simplex",
    "split_optimizers",
]
