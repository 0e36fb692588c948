"""MkDocs hook: pages generated from the code and the benchmark results at build time.

- ``dimensions/<dimension>.md``: every registered audit of the dimension
  (``trustrec.audit.available_audits(dimension)``): its description, what it needs, its docstrings,
  its config fields with their defaults, its thresholds (configured and derived from settings).
- ``api/<package>.md``: one ``:::`` block per name in ``__all__`` of each public package.
- ``benchmarks.md``: one section per ``benchmarks/results/*.json`` (command and main figures).

The build fails (``PluginError``) when a public package is not in the reference, or when a public
name has no rendered entry (its anchor missing from the page's HTML): the reference cannot drift
from ``__all__``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import math
import pkgutil
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.trustrec")
ROOT = Path(__file__).resolve().parents[2]
#: Packages whose ``__all__`` the reference covers, in this order; public packages found under
#: ``trustrec`` that are missing here fail the build (``trustrec.cli`` is documented by ``--help``).
CORE = [
    "trustrec.data",
    "trustrec.models",
    "trustrec.models.classic",
    "trustrec.models.llm",
    "trustrec.models.training",
    "trustrec.models.external",
    "trustrec.models.agents",
    "trustrec.eval",
    "trustrec.audit",
    # trustrec.audit.<dimension> packages are added as found
    "trustrec.mitigate",
    "trustrec.mitigate.control",
    "trustrec.mitigate.defences",
    "trustrec.mitigate.training",
    "trustrec.parallel",
    "trustrec.runs",
    "trustrec.serve",
    "trustrec.report",
    "trustrec.testing",
    "trustrec.registry",
    "trustrec.errors",
]
NOT_IN_REFERENCE = {"trustrec.cli"}

DIMENSION_INTRO = {
    "robustness": "Does the recommender keep its answers when its inputs are perturbed or attacked "
    "(noisy histories, fake users in the training data, manipulated item text)?",
    "fairness": "Are users and items treated alike: accuracy across user groups, exposure across "
    "items, calibration to a user's tastes, sensitivity to stated attributes, cold items, "
    "candidate positions?",
    "controllability": "Does the recommender follow what users and platforms ask of it "
    "(constraints in the query, platform rules, prompt wording)?",
    "explainability": "Do explanations name what actually drove a recommendation?",
    "factuality": "Does an LLM recommender recommend items that exist?",
    "privacy": "What does the trained model reveal about its training users, and can a user be forgotten?",
    "safety": "What happens when the recommender's outputs feed back into its own training data "
    "(and, for agents, when tools and memories are attacked)?",
}

_state: dict[str, Any] = {}


# -- helpers ---------------------------------------------------------------------------------------
def _md_cell(text: Any) -> str:
    s = str(text).replace("\n", " ").replace("|", "\\|")
    return s


def _code(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value, default=str)
    s = s.replace("|", "\\|")
    return f"`{s}`" if "`" not in s else f"``{s}``"


def _type_name(ann: Any) -> str:
    if ann is None:
        return ""
    if isinstance(ann, type):
        return ann.__name__
    s = str(ann).replace("typing.", "").replace("NoneType", "None")
    s = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], s)
    s = re.sub(r"\b(?:[a-z_][\w]*\.)+([A-Za-z_]\w*)", r"\1", s)
    s = re.sub(r"Annotated\[([\w\[\], ]+?), [^\[\]]*(?:\([^()]*\))?\]", r"\1", s)
    s = re.sub(r"^Optional\[(.*)\]$", r"\1 | None", s)
    return s


def _dedent_doc(doc: str | None) -> str:
    if not doc:
        return ""
    return inspect.cleandoc(doc)


def _rst_to_md(text: str) -> str:
    """Docstrings use reST roles (``:class:`X```) and double backticks; render them as code."""
    text = re.sub(r":(?:class|func|meth|data|mod|attr|obj|exc):`~?([^`]+)`", r"`\1`", text)
    return _escape_tags(text.replace("``", "`"))


def _escape_tags(text: str) -> str:
    """``<title>`` in prose would be read as an HTML tag: escape ``<`` outside code spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i])
    return "`".join(parts)


def _field_docs(config_cls: type) -> dict[str, str]:
    """Per-field text from the config class's numpy docstring (Parameters/Attributes sections)."""
    out: dict[str, str] = {}
    doc = _dedent_doc(config_cls.__doc__)
    if not doc:
        return out
    # prose form: "``name``: text; ``other``: text" (the wave-1 docstrings)
    flat = " ".join(doc.split())
    fields = "|".join(sorted(getattr(config_cls, "model_fields", {}), key=len, reverse=True)) or r"\w+"
    pattern = rf"``({fields})``:\s*(.*?)(?=[;.]\s*``(?:{fields})``:|$)"
    for m in re.finditer(pattern, flat):
        out.setdefault(m.group(1), m.group(2).strip())
    try:
        import griffe

        parsed = griffe.Docstring(doc).parse("numpy", warn_unknown_params=False)
    except Exception:  # noqa: BLE001 -- a docstring griffe cannot parse is shown as prose only
        return out
    for section in parsed:
        if section.kind.value in ("parameters", "attributes", "other parameters"):
            for item in section.value:
                out[item.name] = item.description
    return out


def _use_this_checkout() -> None:
    """Document this checkout's code (as mkdocstrings reads it from ``src/``), whichever checkout
    the environment's editable install points at (mkdocs restores ``sys.path`` after loading a
    hook module, so this runs from the events)."""
    if "trustrec" not in sys.modules and str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))


def _public_packages() -> list[str]:
    _use_this_checkout()
    import trustrec
    import trustrec.audit

    if not Path(trustrec.__file__).resolve().is_relative_to(ROOT / "src"):
        raise PluginError(f"trustrec was imported from {trustrec.__file__}, not from {ROOT / 'src'}")
    dims = sorted(
        f"trustrec.audit.{m.name}" for m in pkgutil.iter_modules(trustrec.audit.__path__) if not m.name.startswith("_")
    )
    i = CORE.index("trustrec.audit") + 1
    documented = [*CORE[:i], *dims, *CORE[i:]]
    missing = []
    for m in pkgutil.walk_packages(trustrec.__path__, "trustrec."):
        if not m.ispkg or any(p.startswith("_") for p in m.name.split(".")):
            continue
        if m.name in documented or any(m.name == n or m.name.startswith(n + ".") for n in NOT_IN_REFERENCE):
            continue
        if m.name.startswith("trustrec.audit.") and m.name.count(".") > 2:
            continue
        mod = importlib.import_module(m.name)
        if getattr(mod, "__all__", None):
            missing.append(m.name)
    if missing:
        raise PluginError(
            f"public packages not in the API reference: {', '.join(missing)} "
            "(add them to CORE in docs/_hooks/gen_pages.py, or to NOT_IN_REFERENCE with a reason)"
        )
    return documented


def _statically_bound(mod) -> set[str]:
    """Names a module's source binds at top level (imports, definitions, assignments)."""
    import ast

    tree = ast.parse(Path(mod.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.If | ast.Try):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return names


def _page_name(package: str) -> str:
    return f"api/{package}.md"


# -- API reference ---------------------------------------------------------------------------------
def _api_pages(packages: list[str]) -> dict[str, str]:
    pages: dict[str, str] = {}
    expected: dict[str, list[str]] = {}
    index = [
        "# API reference\n",
        (
            "Generated from the code at build time: one page per public package, one entry per name in "
            "the package's `__all__` (docstrings in numpy style). The build fails when a public name "
            "has no entry.\n"
        ),
        "| Package | Public names | Summary |",
        "|---|---|---|",
    ]
    for pkg in packages:
        mod = importlib.import_module(pkg)
        names = list(getattr(mod, "__all__", []) or [])
        expected[pkg] = names
        summary = _dedent_doc(mod.__doc__).split("\n\n")[0].replace("\n", " ")
        index.append(f"| [`{pkg}`]({pkg}.md) | {len(names)} | {_md_cell(_rst_to_md(summary))} |")
        lines = [f"# `{pkg}`\n", _rst_to_md(_dedent_doc(mod.__doc__)) + "\n"]
        if names:
            lines.append("**Public names:** " + ", ".join(f"[`{n}`](#{pkg}.{n})" for n in names) + "\n")
        bound = _statically_bound(mod)
        for name in names:
            obj = getattr(mod, name, None)
            target = f"{pkg}.{name}"
            if name not in bound:
                # exported lazily (a module ``__getattr__``): static analysis cannot see the name,
                # so render the object where it is defined under an anchor of the public name
                real = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
                if not getattr(obj, "__qualname__", None) or "<" in real:
                    raise PluginError(f"{target}: exported lazily and not a class or function; cannot document it")
                lines.append(f"[](){{ #{target} }}\n")
                lines.append(f"*`{target}` is exported lazily (imported on first use); defined as `{real}`.*\n")
                target = real
            lines.append(f"::: {target}")
            opts = ["    options:", "      show_root_heading: true", "      heading_level: 2"]
            if inspect.ismodule(obj):
                opts.append("      members: false")
            lines.append("\n".join(opts) + "\n")
        pages[_page_name(pkg)] = "\n".join(lines)
    pages["api/index.md"] = "\n".join(index) + "\n"
    _state["expected"] = expected
    return pages


# -- trust dimensions ------------------------------------------------------------------------------
def _exported_as(cls: type, packages: list[str]) -> str | None:
    for pkg in packages:
        if not pkg.startswith("trustrec.audit"):
            continue
        mod = importlib.import_module(pkg)
        for n in getattr(mod, "__all__", []) or []:
            if getattr(mod, n, None) is cls:
                return f"{pkg}.{n}"
    return None


def _derived_thresholds(cls: type) -> list[str]:
    from trustrec.audit import Audit

    if cls._thresholds is Audit._thresholds:
        return []
    for klass in cls.__mro__:
        if "_thresholds" in vars(klass):
            try:
                src = inspect.getsource(vars(klass)["_thresholds"])
            except (OSError, TypeError):
                return []
            return sorted(set(re.findall(r"self\.config\.(\w+)", src)) - {"thresholds", "k", "metrics"})
    return []


def _field_rows(cls: type) -> tuple[list[str], dict[str, Any]]:
    from pydantic_core import PydanticUndefined

    from trustrec.audit import AuditConfig

    config_cls = cls.config_class
    docs = _field_docs(config_cls)
    base_fields = set(AuditConfig.model_fields)
    rows = ["| Setting | Type | Default | Description |", "|---|---|---|---|"]
    defaults: dict[str, Any] = {}
    own = [f for f in config_cls.model_fields if f not in base_fields]
    shared = [f for f in config_cls.model_fields if f in base_fields]
    for name in [*own, *shared]:
        fi = config_cls.model_fields[name]
        if fi.default is not PydanticUndefined:
            default = fi.default
        elif fi.default_factory is not None:
            try:
                default = fi.default_factory()
            except TypeError:
                default = "(computed)"
        else:
            default = "(required)"
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        if isinstance(default, tuple):
            default = list(default)
        if isinstance(default, list):
            default = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in default]
        defaults[name] = default
        desc = fi.description or docs.get(name, "")
        if not desc and name in base_fields:
            desc = "shared by every audit (see `AuditConfig`)"
        rows.append(
            f"| `{name}` | {_md_cell(_type_name(fi.annotation))} | {_code(default)} | {_md_cell(_rst_to_md(desc))} |"
        )
    return rows, defaults


def _audit_section(name: str, cls: type, packages: list[str]) -> str:
    out = [f"## `{name}`\n"]
    public = _exported_as(cls, packages)
    ref = f"[`{public}`][{public}]" if public else f"`{cls.__module__}.{cls.__qualname__}`"
    out.append(f"*Class:* {ref} · *config:* `{cls.config_class.__name__}`\n")
    out.append(f"**Measures:** {_rst_to_md(cls.description) or '(no description)'}\n")
    out.append(f"**Needs:** {_rst_to_md(cls.needs)}\n")
    from trustrec.audit import RetrainingAudit

    if issubclass(cls, RetrainingAudit):
        out.append(
            "**Retrains** copies of the model (a `RetrainingAudit`: `model_spec`, else the audited model's own config).\n"
        )
    declared = getattr(cls, "estimates", None)
    if isinstance(declared, (list, tuple, dict)) and declared:
        out.append("**Estimates:** " + ", ".join(f"`{e}`" for e in declared) + "\n")
    doc = _rst_to_md(_dedent_doc(cls.__doc__))
    mod_doc = _rst_to_md(_dedent_doc(importlib.import_module(cls.__module__).__doc__))
    if doc:
        out.append("**Estimates and method** (from the class docstring):\n")
        out.append(textwrap.indent(doc, "> ") + "\n")
    if mod_doc and mod_doc != doc:
        out.append('??? note "Module notes"\n')
        out.append(textwrap.indent(mod_doc, "    ") + "\n")
    rows, defaults = _field_rows(cls)
    out.append("**Thresholds:**\n")
    configured = defaults.get("thresholds") or []
    derived = _derived_thresholds(cls)
    items = []
    items.extend(
        f"- default: `{t['estimate']} {t['op']} {t['limit']:g}` (alpha {t.get('alpha', 0.05):g})" for t in configured
    )
    items.extend(
        f"- derived from the setting `{f}` (default {_code(defaults.get(f))}; `None` turns it off)" for f in derived
    )
    if not items:
        items.append("- none by default: the verdict is `no_threshold` unless `thresholds` are configured")
    items.append(
        "- any estimate can be judged with `thresholds: [{estimate, op, limit, alpha}]` "
        "(see [`Threshold`][trustrec.audit.Threshold] and [`Verdict`][trustrec.audit.Verdict])"
    )
    out.append("\n".join(items) + "\n")
    if cls.config_class.__doc__:
        out.append('??? info "Settings in words"\n')
        out.append(textwrap.indent(_rst_to_md(_dedent_doc(cls.config_class.__doc__)), "    ") + "\n")
    out.append("**Settings** (config fields and defaults):\n")
    out.append("\n".join(rows) + "\n")
    return "\n".join(out)


def _dimension_pages(packages: list[str]) -> dict[str, str]:
    from trustrec.audit import DIMENSIONS, available_audits

    pages = {}
    for dim in DIMENSIONS:
        audits = available_audits(dim)
        lines = [f"# {dim.capitalize()}\n", DIMENSION_INTRO.get(dim, "") + "\n"]
        lines.append(
            "Generated from the audit registry at build time "
            f"(`trustrec.audit.available_audits({dim!r})`). Run one with "
            f"`trustrec audit RUN_DIR -a NAME`, or in Python: `audit_class(NAME)(**settings).run(model, split)`.\n"
        )
        if not audits:
            lines.append("No audit is registered for this dimension yet.\n")
        else:
            lines.append("| Audit | Measures | Needs |\n|---|---|---|")
            for name, cls in audits.items():
                lines.append(
                    f"| [`{name}`](#{name}) | {_md_cell(_rst_to_md(cls.description))} | {_md_cell(cls.needs)} |"
                )
            lines.append("")
            for name, cls in audits.items():
                lines.append(_audit_section(name, cls, packages))
        pages[f"dimensions/{dim}.md"] = "\n".join(lines)
    return pages


# -- benchmark results -----------------------------------------------------------------------------
_SKIP_KEYS = {
    "platform",
    "processor",
    "machine",
    "command_source",
    "sample_users",
    "top_items",
    "user_indices",
    "commands",
    "per_row_ndcg@10",
    "top10",
}
_MAX_ROWS = 60


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    if isinstance(v, dict):
        keys = set(v)
        for lo, hi, val in (("ci_low", "ci_high", "value"), ("ci_low", "ci_high", "mean")):
            if {lo, hi, val} <= keys and all(not isinstance(v[x], (dict, list)) for x in (lo, hi, val)):
                return f"{_fmt(v[val])} [{_fmt(v[lo])}, {_fmt(v[hi])}]"
    if isinstance(v, list) and len(v) <= 6 and all(not isinstance(x, (dict, list)) for x in v):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if (  # [value, [low, high]]: an estimate with its interval
        isinstance(v, list)
        and len(v) == 2
        and isinstance(v[0], (int, float))
        and isinstance(v[1], list)
        and len(v[1]) == 2
        and all(isinstance(x, (int, float)) or x is None for x in v[1])
    ):
        return f"{_fmt(v[0])} [{_fmt(v[1][0])}, {_fmt(v[1][1])}]"
    if isinstance(v, str) and len(v) > 160:
        return _escape_tags(_md_cell(v[:157])) + "..."
    return _escape_tags(_md_cell(str(v)))


def _is_leafish(v: Any) -> bool:
    if not isinstance(v, (dict, list)):
        return True
    return _fmt(v) != _md_cell(str(v))


def _flatten(d: Any, prefix: str, rows: list[tuple[str, str]], depth: int) -> None:
    if len(rows) > _MAX_ROWS:
        return
    if _is_leafish(d):
        rows.append((prefix, _fmt(d)))
        return
    if depth >= 4:
        return
    if isinstance(d, dict):
        for k, v in d.items():
            if k in _SKIP_KEYS or k == "command":
                continue
            _flatten(v, f"{prefix} / {k}" if prefix else str(k), rows, depth + 1)
    elif isinstance(d, list) and d and all(isinstance(x, dict) for x in d) and len(d) <= 40:
        for i, x in enumerate(d):
            label = next((str(x[k]) for k in ("name", "attack", "workload", "seed", "batch_size") if k in x), str(i))
            _flatten(x, f"{prefix}[{label}]", rows, depth + 1)


def _table_of_records(records: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in cols and _is_leafish(v):
                cols.append(k)
    cols = cols[:10]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out.extend("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in records[:_MAX_ROWS])
    if len(records) > _MAX_ROWS:
        out.append(f"\n({len(records) - _MAX_ROWS} more rows in the file)")
    return out


def _benchmark_page() -> str:
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    lines = [
        "# Benchmark results\n",
        (
            "Generated at build time from `benchmarks/results/*.json`: for each file, the command that "
            "produced it and its main figures (numbers to 4 significant digits; `value [low, high]` is "
            "an estimate with its 95% CI). The scripts are in `benchmarks/`; the machine each ran on is "
            "recorded in its file.\n"
        ),
    ]
    for f in files:
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            raise PluginError(f"{f}: not readable JSON ({e})") from e
        lines.append(f"## `{f.stem}`\n")
        cmd = data.get("command") if isinstance(data, dict) else None
        if cmd is None and isinstance(data, dict) and isinstance(data.get("commands"), list):
            cmd = "\n".join(map(str, data["commands"])) or None  # a file built by several stage runs
        lines.append(f"```bash\n{cmd}\n```\n" if cmd else "*No command recorded in this file.*\n")
        if isinstance(data, dict) and data.get("command_source"):
            lines.append(f"*{_md_cell(data['command_source'])}.*\n")
        if not isinstance(data, dict):
            continue
        summaries = []
        for k, v in data.items():
            if k == "summary" and isinstance(v, str):
                summaries.append(v)
            elif isinstance(v, dict) and isinstance(v.get("summary"), str):
                summaries.append(f"**{k}**: {v['summary']}")
        lines.extend(f"- {_escape_tags(_md_cell(s))}" for s in summaries[:12])
        if summaries:
            lines.append("")
        rows: list[tuple[str, str]] = []
        tables: list[tuple[str, list[dict]]] = []
        for k, v in data.items():
            if k in _SKIP_KEYS or k == "command" or (k == "summary" and isinstance(v, str)):
                continue
            if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                tables.append((k, v))
            elif isinstance(v, dict) and not _is_leafish(v):
                inner = {kk: vv for kk, vv in v.items() if not (kk == "summary" and isinstance(vv, str))}
                _flatten(inner, k, rows, 1)
            else:
                rows.append((k, _fmt(v)))
        if rows:
            lines.append("| Figure | Value |\n|---|---|")
            for key, val in rows[:_MAX_ROWS]:
                lines.append(f"| {_escape_tags(_md_cell(key))} | {val} |")
            if len(rows) > _MAX_ROWS:
                lines.append(f"\n(more figures in `{f.relative_to(ROOT)}`)")
            lines.append("")
        for k, recs in tables:
            lines.append(f"**{k}**\n")
            lines.extend(_table_of_records(recs))
            lines.append("")
    return "\n".join(lines)


# -- mkdocs events ---------------------------------------------------------------------------------
def on_files(files: Files, config) -> Files:
    packages = _public_packages()
    _state["packages"] = packages
    generated = {**_api_pages(packages), **_dimension_pages(packages), "benchmarks.md": _benchmark_page()}
    for root_file, uri in (("CONTRIBUTING.md", "contributing.md"), ("CHANGELOG.md", "changelog.md")):
        path = ROOT / root_file
        generated[uri] = path.read_text(encoding="utf-8") if path.exists() else f"# {root_file}\n\n(missing)\n"
    for uri, content in generated.items():
        existing = files.get_file_from_path(uri)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, uri, content=content))
    _state["html"] = {}
    return files


def on_page_content(html: str, page, config, files):
    if page.file.src_uri.startswith("api/"):
        _state["html"][page.file.src_uri] = html
    return html


def on_env(env, config, files):
    """After every page is rendered: each public name must have its entry in the reference."""
    problems = []
    for pkg, names in _state.get("expected", {}).items():
        html = _state["html"].get(_page_name(pkg), "")
        ids = set(re.findall(r'id="([^"]+)"', html))
        missing = [n for n in names if f"{pkg}.{n}" not in ids]
        if missing:
            problems.append(f"{pkg}: {', '.join(missing)}")
    if problems:
        raise PluginError("public names missing from the API reference: " + "; ".join(problems))
    n = sum(len(v) for v in _state.get("expected", {}).values())
    log.info("API reference: all %d public names of %d packages present", n, len(_state.get("expected", {})))
    return env


def on_config(config):
    """Put one API page per public package under the nav's "API reference" section, and the
    root CONTRIBUTING.md / CHANGELOG.md under theirs (read at build time, never copied)."""
    packages = _public_packages()
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "API reference" in entry:
            entry["API reference"] = ["api/index.md", *(_page_name(p) for p in packages)]
    return config
