"""Controllability audits (user constraints, platform rules, prompt sensitivity) and the position
bias of LLM rankers (a fairness audit that lives here because it shares their machinery), one
module each; ``_common`` is what they share."""

# the import order is the registration order (user_control, platform_rules, prompt_sensitivity, position_bias)
from trustrec.audit.controllability.user_control import (  # noqa: I001
    CONSTRAINT_KINDS,
    UserControlAudit,
    UserControlConfig,
    constraint_requests,
)
from trustrec.audit.controllability.platform_rules import PlatformRulesAudit, PlatformRulesConfig
from trustrec.audit.controllability.prompt_sensitivity import (
    PromptSensitivityAudit,
    PromptSensitivityConfig,
    load_paraphrases,
)
from trustrec.audit.controllability.position_bias import (
    PositionBiasAudit,
    PositionBiasConfig,
    equal_rate_test,
    uniform_position_test,
    wilson_interval,
)

__all__ = [
    "CONSTRAINT_KINDS",
    "PlatformRulesAudit",
    "PlatformRulesConfig",
    "PositionBiasAudit",
    "PositionBiasConfig",
    "PromptSensitivityAudit",
    "PromptSensitivityConfig",
    "UserControlAudit",
    "UserControlConfig",
    "constraint_requests",
    "equal_rate_test",
    "load_paraphrases",
    "uniform_position_test",
    "wilson_interval",
]
