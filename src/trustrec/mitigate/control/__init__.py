"""Control over any recommender: user constraints stated in natural language (``constraints``,
enforced by ``constrained``) and platform rules (``platform_rules``), over the catalog as
constraints see it (``catalog``)."""

from trustrec.mitigate.control.catalog import YEAR_COLUMNS, ControlCatalog
from trustrec.mitigate.control.constrained import ConstrainedConfig, ConstrainedRecommender
from trustrec.mitigate.control.constraints import (
    Constraint,
    Different,
    ExcludeGroups,
    IncludeGroups,
    ParsedConstraint,
    SimilarTo,
    YearRange,
    allowed_items,
    parse_constraint,
)
from trustrec.mitigate.control.platform_rules import (
    PlatformRules,
    RuleEnforcedConfig,
    RuleEnforcedRecommender,
    enforce_rules,
)

__all__ = [
    "YEAR_COLUMNS",
    "ConstrainedConfig",
    "ConstrainedRecommender",
    "Constraint",
    "ControlCatalog",
    "Different",
    "ExcludeGroups",
    "IncludeGroups",
    "ParsedConstraint",
    "PlatformRules",
    "RuleEnforcedConfig",
    "RuleEnforcedRecommender",
    "SimilarTo",
    "YearRange",
    "allowed_items",
    "enforce_rules",
    "parse_constraint",
]
