"""Flags and experiments: GrowthBook definitions evaluated per subject, sticky exposures,
attribution of events to the variants that served them, and the significance report.

Domain code: no HTTP, no GraphQL (``resolvers/`` and ``gateway/`` call it).
"""

from experiments.assign import Assignment, Subject
from experiments.definitions import DefinitionError, Definitions, RecoParams
from experiments.service import ExperimentService

__all__ = [
    "Assignment",
    "DefinitionError",
    "Definitions",
    "ExperimentService",
    "RecoParams",
    "Subject",
]
