"""Experiment runs: config -> run directory (atomic, resumable), and run comparison."""

from trustrec.runs._audit import audit_model, audit_plan, load_audit_results, run_audits
from trustrec.runs._compare import compare_runs, load_run, schemes_side_by_side, split_scheme
from trustrec.runs._config import RunConfig, load_run_config
from trustrec.runs._external import audit_external, load_external_config
from trustrec.runs._run import RunResult, environment_info, prepare_data, run_experiment

__all__ = [
    "RunConfig",
    "RunResult",
    "audit_external",
    "audit_model",
    "audit_plan",
    "compare_runs",
    "environment_info",
    "load_audit_results",
    "load_external_config",
    "load_run",
    "load_run_config",
    "prepare_data",
    "run_audits",
    "run_experiment",
    "schemes_side_by_side",
    "split_scheme",
]
