"""Phases 4-5 of a request: what the deliverables are, how good they are, what to re-run."""

from .assess import Inputs, assess
from .deliverables import PlanSplit, content_of, descendants, find_deliverables, plan_parts

__all__ = [
    "Inputs",
    "PlanSplit",
    "assess",
    "content_of",
    "descendants",
    "find_deliverables",
    "plan_parts",
]
