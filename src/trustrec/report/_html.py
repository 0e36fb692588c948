"""The report as one self-contained HTML page: inline CSS, inline SVG figures, no script, no
external reference. Rendered with jinja2 with autoescaping on, so every string from a run
(item titles in evidence, audit reasons, settings) is escaped; only the SVG that matplotlib made
here is inserted as markup.

Text from data cannot reorder the report around it: every Unicode bidirectional control
character (U+202A-U+202E embeddings and overrides, U+2066-U+2069 isolates, U+200E/U+200F marks,
U+061C) anywhere in the page, attributes and figures included, is replaced by a visible marker
such as ``[U+202E]``; and data-derived text that stands inline beside report text (names,
summaries, reasons, notes, evidence cells) is wrapped in ``<bdi>``, so right-to-left text in it
stays isolated too."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from trustrec.report._data import STATUS_ORDER, RunContents
from trustrec.report._plots import RenderedPlot, render_plot

__all__ = ["render_html"]

_CELL_CHARS = 200  # evidence cells longer than this are cut
BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
_BIDI_TABLE = {ord(c): f"[U+{ord(c):04X}]" for c in BIDI_CONTROLS}


def neutralize_bidi(text: str) -> str:
    """``text`` with every bidirectional control character replaced by a visible ``[U+XXXX]``."""
    return text.translate(_BIDI_TABLE)


def render_html(contents: RunContents, data: dict[str, Any]) -> str:
    """The HTML page for ``data`` (from :func:`report_data`); figures are drawn from the full
    evidence tables in ``contents``."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(
        num=_num,
        signed=_signed,
        ci=_ci,
        pval=_pval,
        count=_count,
        cell=_cell,
        label=_label,
        bdi=lambda v: Markup("<bdi>%s</bdi>") % v,
    )
    anchors = _anchors([a["audit"] for a in data["audits"]])
    audits = []
    for entry, audit, anchor in zip(contents.audits, data["audits"], anchors):
        plots: list[RenderedPlot] = []
        if entry.result is not None:
            for p in entry.result.plots:
                r = render_plot(p, entry.result.evidence.get(p.table))
                plots.append(RenderedPlot(r.title, r.kind, Markup(r.svg) if r.svg else None, r.notes))
        audits.append(
            {
                **audit,
                "anchor": anchor,
                "rendered_plots": plots,
                "settings_json": json.dumps(audit["settings"], indent=1, sort_keys=True, default=str),
            }
        )
    scorecard = [
        {**row, "linked": [a for a in audits if a["dimension"] == row["dimension"]]} for row in data["scorecard"]
    ]
    dims = [row for row in scorecard if row["n_audits"]]
    config = data["settings"]["config"]
    page = env.from_string(_TEMPLATE).render(
        d=data,
        audits=audits,
        dims=dims,
        scorecard=scorecard,
        status_counts=_status_counts(audits),
        trail=_flatten(data["trail"]),
        environment=_flatten(data["environment"] or {}),
        evaluation=_flatten(data["settings"]["evaluation"]),
        timings=_flatten(data["settings"]["timings_s"]),
        config=None if config is None else _yaml(config),
        css=Markup(_CSS),
    )
    return neutralize_bidi(page)  # the template has none: every control here came from data


# -- formatting (jinja filters) -------------------------------------------------------------------------
def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _num(v, digits: int = 4) -> str:
    if _is_missing(v):
        return "\u2013"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isinf(v):
            return str(v)
        return f"{int(v):,}" if v == int(v) and abs(v) < 1e15 else f"{v:.{digits}g}"
    return _cell(v)


def _signed(v) -> str:
    return "\u2013" if _is_missing(v) else f"{v:+.4g}"


def _ci(lo, hi) -> str:
    return "\u2013" if _is_missing(lo) or _is_missing(hi) else f"[{_num(lo)}, {_num(hi)}]"


def _pval(p) -> str:
    if _is_missing(p):
        return "\u2013"
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def _count(v) -> str:
    return "\u2013" if _is_missing(v) else f"{int(v):,}"


def _cell(v) -> str:
    if _is_missing(v):
        return "\u2013"
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, (dict, list)):
        v = json.dumps(v, default=str)
    text = str(v)
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "\u2026"


def _label(status: str) -> str:
    return str(status).replace("_", " ")


def _flatten(value: Any, prefix: str = "", limit: int = 400) -> list[tuple[str, str]]:
    """Nested dicts as ``(dotted.key, value)`` rows; lists of scalars joined by commas."""
    rows: list[tuple[str, str]] = []

    def walk(v, key):
        if len(rows) >= limit:
            return
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                walk(sub, f"{key}.{k}" if key else str(k))
        elif isinstance(v, list) and v and all(not isinstance(x, (dict, list)) for x in v):
            rows.append((key, ", ".join(_cell(x) for x in v)))
        elif isinstance(v, (dict, list)):
            rows.append((key, _cell(v)))
        else:
            rows.append((key, _cell(v)))

    walk(value, prefix)
    if len(rows) >= limit:
        rows.append(("\u2026", f"cut at {limit} entries; see report.json"))
    return rows


def _yaml(value) -> str:
    import yaml

    try:
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(value, indent=1, default=str)


def _status_counts(audits) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for a in audits:
        counts[a["verdict"]["status"]] = counts.get(a["verdict"]["status"], 0) + 1
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return sorted(counts.items(), key=lambda kv: rank.get(kv[0], rank["error"]))


def _anchors(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        slug = "audit-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", str(name)).strip("-") or "x")
        seen[slug] = seen.get(slug, 0) + 1
        out.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return out


_CSS = """
:root { --fg:#1d2433; --muted:#5b6475; --line:#d9dee7; --bg:#ffffff; --soft:#f5f7fa; --accent:#2f5d9f; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
       color:var(--fg); background:var(--bg); }
header.top { background:#1f2d44; color:#fff; padding:18px 32px; }
header.top h1 { margin:0; font-size:22px; }
header.top p { margin:4px 0 0; color:#c9d3e3; }
nav { position:sticky; top:0; background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; z-index:2;
      font-size:13px; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; }
main { max-width:1120px; margin:0 auto; padding:8px 32px 48px; }
section { margin-top:28px; }
h2 { font-size:19px; border-bottom:2px solid var(--line); padding-bottom:4px; }
h3 { font-size:16px; margin:0 0 6px; }
h4 { font-size:14px; margin:16px 0 6px; color:var(--muted); }
article.audit { border:1px solid var(--line); border-radius:6px; padding:14px 18px; margin:14px 0;
                background:#fff; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:13px; max-width:100%; }
th, td { border-bottom:1px solid var(--line); padding:4px 10px; text-align:left; vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
tbody tr:nth-child(even) td { background:#fafbfc; }
.scroll { overflow-x:auto; max-width:100%; }
.kv td:first-child { color:var(--muted); white-space:nowrap; }
.kv td { word-break:break-all; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
         color:#fff; background:#7a8394; white-space:nowrap; }
.badge.pass { background:#2e7d32; } .badge.warn { background:#c77700; } .badge.fail { background:#c62828; }
.badge.error { background:#6a1b9a; } .badge.no_threshold { background:#607d8b; }
.badge.not_applicable { background:#b0b7c3; color:#1d2433; } .badge.not_audited { background:#e3e7ee; color:#5b6475; }
.audit-list a { margin-right:10px; text-decoration:none; color:var(--fg); white-space:nowrap; }
.summary-line { font-size:15px; margin:4px 0 8px; }
.note { color:var(--muted); font-style:italic; }
.callout { background:#fff8e1; border-left:4px solid #c77700; padding:8px 12px; margin:10px 0; }
ul.reasons, ul.warnings { margin:4px 0 8px; padding-left:20px; }
ul.warnings li { color:#8a5300; }
figure { margin:10px 0; }
figure svg.plot { width:100%; max-width:720px; height:auto; display:block; }
figcaption { font-size:12px; color:var(--muted); }
pre { background:var(--soft); padding:10px; overflow-x:auto; font-size:12px; max-height:480px; }
details summary { cursor:pointer; color:var(--accent); margin:6px 0; }
footer { color:var(--muted); font-size:12px; margin-top:40px; }
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="trustrec">
<title>Trust report: {{ d.run }}</title>
<style>{{ css }}</style>
</head>
<body>
<header class="top">
<h1>Trust report: {{ d.run|bdi }}</h1>
<p>{{ d.model|bdi }} on {{ d.dataset|bdi }} &middot; {{ d.date|bdi }}</p>
</header>
<nav>
<a href="#summary">Summary</a>{% if d.base %}<a href="#base">Next to its base</a>{% endif %}<a href="#accuracy">Accuracy</a>{% if d.evaluation_bias %}<a href="#evaluation-bias">Evaluation bias</a>{% endif %}<a href="#scorecard">Scorecard</a>
{% for row in dims %}<a href="#dim-{{ row.dimension }}">{{ row.dimension|capitalize }}</a>{% endfor %}
<a href="#trail">Audit trail</a><a href="#settings">Settings</a>
</nav>
<main>
<section id="summary">
<h2>Summary</h2>
<table class="kv">
<tr><td>run</td><td>{{ d.run }}</td></tr>
<tr><td>model</td><td>{{ d.model }}</td></tr>
<tr><td>dataset</td><td>{{ d.dataset }}</td></tr>
<tr><td>date</td><td>{{ d.date }}</td></tr>
<tr><td>report generated</td><td>{{ d.generated }}</td></tr>
<tr><td>audits</td><td>{{ d.audits|length }}{% if d.audits %} &mdash;
{% for status, n in status_counts %}<span class="badge {{ status }}">{{ n }} {{ status|label }}</span> {% endfor %}
{% endif %}</td></tr>
</table>
{% for note in d.notes %}<p class="callout">{{ note|bdi }}</p>{% endfor %}
</section>

{% if d.base %}{% set b = d.base %}
<section id="base">
<h2>Next to its base</h2>
<p>{{ b.run|bdi }} ({{ b.model|bdi }}) next to its base {{ b.base_run|bdi }} ({{ b.base_model|bdi }}).
{% if b.accuracy.paired %}Accuracy is paired on the users both runs evaluated (paired t and Wilcoxon tests).{% endif %}
Audit estimates come from each run's own audit: their CIs, not a paired test, say whether a change is more than noise.</p>
{% for note in b.notes %}<p class="callout">{{ note|bdi }}</p>{% endfor %}
<h4>Accuracy</h4>
{% if b.accuracy.rows %}
<div class="scroll"><table>
<thead><tr><th>metric</th><th class="num">users</th><th class="num">base (95% CI)</th><th class="num">this run (95% CI)</th><th class="num">change</th><th class="num">p (t)</th><th class="num">p (Wilcoxon)</th></tr></thead>
<tbody>
{% for r in b.accuracy.rows %}
<tr><td>{{ r.metric|bdi }}</td><td class="num">{{ r.users|count }}</td>
<td class="num">{{ r.base.mean|num }} {{ r.base.ci_low|ci(r.base.ci_high) }}</td>
<td class="num">{{ r.run.mean|num }} {{ r.run.ci_low|ci(r.run.ci_high) }}</td>
<td class="num">{{ r.change|signed }}</td><td class="num">{{ r.p_t|pval }}</td><td class="num">{{ r.p_wilcoxon|pval }}</td></tr>
{% endfor %}
</tbody></table></div>
{% else %}<p class="note">The two runs share no metric.</p>{% endif %}
{% if b.scorecard %}
<h4>Scorecard</h4>
<table>
<thead><tr><th>dimension</th><th>base</th><th>this run</th><th>change</th></tr></thead>
<tbody>
{% for r in b.scorecard %}
<tr><td>{{ r.dimension|bdi }}</td><td><span class="badge {{ r.base }}">{{ r.base|label }}</span></td>
<td><span class="badge {{ r.run }}">{{ r.run|label }}</span></td><td>{{ r.direction }}</td></tr>
{% endfor %}
</tbody></table>
{% endif %}
{% if b.audits %}
<h4>Audits</h4>
<div class="scroll"><table>
<thead><tr><th>audit</th><th>estimate</th><th class="num">base (95% CI)</th><th class="num">this run (95% CI)</th><th class="num">change</th></tr></thead>
<tbody>
{% for a in b.audits %}
<tr><td><b>{{ a.audit|bdi }}</b></td><td>verdict ({{ a.direction }})</td>
<td class="num"><span class="badge {{ a.base_status }}">{{ a.base_status|label }}</span></td>
<td class="num"><span class="badge {{ a.status }}">{{ a.status|label }}</span></td><td></td></tr>
{% for e in a.estimates %}
<tr><td></td><td>{{ e.name|bdi }}</td>
<td class="num">{{ e.base.mean|num }} {{ e.base.ci_low|ci(e.base.ci_high) }}</td>
<td class="num">{{ e.run.mean|num }} {{ e.run.ci_low|ci(e.run.ci_high) }}</td>
<td class="num">{{ e.change|signed }}</td></tr>
{% endfor %}
{% endfor %}
</tbody></table></div>
{% endif %}
</section>
{% endif %}

<section id="accuracy">
<h2>Accuracy</h2>
{% if d.accuracy.metrics %}
<div class="scroll"><table>
<thead><tr><th>metric</th><th class="num">mean</th><th class="num">95% CI</th><th class="num">users</th></tr></thead>
<tbody>
{% for name, m in d.accuracy.metrics.items() %}
<tr><td>{{ name }}</td><td class="num">{{ m.get("mean")|num }}</td>
<td class="num">{{ m.get("ci_low")|ci(m.get("ci_high")) }}</td><td class="num">{{ m.get("n_users")|count }}</td></tr>
{% endfor %}
</tbody></table></div>
{% else %}<p class="note">metrics.json lists no metrics.</p>{% endif %}
{% if d.accuracy.aggregates %}
<h4>Aggregates</h4>
<table><thead><tr><th>aggregate</th><th class="num">value</th></tr></thead><tbody>
{% for name, v in d.accuracy.aggregates.items() %}<tr><td>{{ name }}</td><td class="num">{{ v|num }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
{% if d.accuracy.counts %}
<h4>Counts</h4>
<table><thead><tr><th>count</th><th class="num">value</th></tr></thead><tbody>
{% for name, v in d.accuracy.counts.items() %}<tr><td>{{ name }}</td><td class="num">{{ v|num }}</td></tr>
{% endfor %}</tbody></table>
{% endif %}
</section>

{% if d.evaluation_bias %}{% set eb = d.evaluation_bias %}
<section id="evaluation-bias">
<h2>Evaluation bias</h2>
<p>{{ eb.explanation }}</p>
<div class="scroll"><table>
<thead><tr><th>metric</th>{% for sc in eb.schemes %}<th class="num">{{ sc }} (95% CI)</th>{% endfor %}</tr></thead>
<tbody>
{% for name, by in eb.rows.items() %}
<tr><td>{{ name }}</td>{% for sc in eb.schemes %}{% set m = by.get(sc) %}<td class="num">{% if m %}{{ m.get("mean")|num }} {{ m.get("ci_low")|ci(m.get("ci_high")) }}{% else %}&ndash;{% endif %}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table></div>
{% for sc, c in eb.counts.items() if c.get("n_users_no_exposed_positive") is not none %}
<p class="note">{{ sc }}: {{ c.get("n_users_evaluated")|count }} users evaluated, {{ c.get("n_users_no_exposed_positive")|count }} without an exposed positive (excluded from Recall), {{ c.get("n_exposed_in_history")|count }} exposed pairs already in the history dropped.</p>
{% endfor %}
</section>
{% endif %}

<section id="scorecard">
<h2>Trust scorecard</h2>
{% if not d.audited %}<p class="note">Not audited yet: every dimension below is unaudited.</p>{% endif %}
<table>
<thead><tr><th>dimension</th><th class="num">audits</th><th>worst status</th><th>audits</th></tr></thead>
<tbody>
{% for row in scorecard %}
<tr><td>{% if row.n_audits %}<a href="#dim-{{ row.dimension }}">{{ row.dimension }}</a>{% else %}{{ row.dimension }}{% endif %}</td>
<td class="num">{{ row.n_audits }}</td>
<td>{% if row.n_audits %}<span class="badge {{ row.worst_status }}">{{ row.worst_status|label }}</span>{% else %}<span class="badge not_audited">not audited</span>{% endif %}</td>
<td class="audit-list">{% for a in row.linked %}<a href="#{{ a.anchor }}">{{ a.audit|bdi }} <span class="badge {{ a.verdict.status }}">{{ a.verdict.status|label }}</span></a>{% endfor %}</td></tr>
{% endfor %}
</tbody></table>
</section>

{% for row in dims %}
<section id="dim-{{ row.dimension }}">
<h2>{{ row.dimension|capitalize }}</h2>
{% for a in audits if a.dimension == row.dimension %}
<article class="audit" id="{{ a.anchor }}">
<h3>{{ a.audit|bdi }} <span class="badge {{ a.verdict.status }}">{{ a.verdict.status|label }}</span></h3>
{% if a.summary %}<p class="summary-line">{{ a.summary|bdi }}</p>{% endif %}
{% if a.verdict.reasons %}<ul class="reasons">{% for r in a.verdict.reasons %}<li>{{ r|bdi }}</li>{% endfor %}</ul>{% endif %}
{% if a.estimates %}
<h4>Estimates</h4>
<div class="scroll"><table>
<thead><tr><th>estimate</th><th class="num">value</th><th class="num">95% CI</th><th class="num">n</th><th class="num">p</th><th>meaning</th></tr></thead>
<tbody>
{% for name, e in a.estimates.items() %}
<tr><td>{{ name }}</td><td class="num">{{ e.value|num }}</td><td class="num">{{ e.ci_low|ci(e.ci_high) }}</td>
<td class="num">{{ e.n|count }}</td><td class="num">{{ e.p_value|pval }}</td><td>{{ e.description }}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
{% if a.warnings %}<h4>Warnings</h4><ul class="warnings">{% for w in a.warnings %}<li>{{ w|bdi }}</li>{% endfor %}</ul>{% endif %}
{% for p in a.rendered_plots %}
<figure>
{% if p.svg %}{{ p.svg }}
{% for n in p.notes %}<figcaption>{{ n|bdi }}</figcaption>{% endfor %}
{% else %}<p class="note">Figure &ldquo;{{ p.title }}&rdquo; ({{ p.kind }}) not drawn: {{ p.notes|join("; ") }}</p>{% endif %}
</figure>
{% endfor %}
{% for name, ev in a.evidence.items() %}
<h4>Evidence: {{ name|bdi }} <span class="note">({% if ev.n_rows > ev.records|length %}first {{ ev.records|length }} of {{ ev.n_rows|count }} rows{% else %}{{ ev.n_rows|count }} rows{% endif %})</span></h4>
{% if ev.records %}
<div class="scroll"><table>
<thead><tr>{% for c in ev.columns %}<th>{{ c|bdi }}</th>{% endfor %}</tr></thead>
<tbody>
{% for rec in ev.records %}<tr>{% for c in ev.columns %}{% set v = rec.get(c) %}<td{% if v is number and v is not boolean %} class="num"{% endif %}>{{ v|cell|bdi }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table></div>
{% else %}<p class="note">empty table</p>{% endif %}
{% endfor %}
</article>
{% endfor %}
</section>
{% endfor %}

<section id="trail">
<h2>Audit trail</h2>
{% if trail %}
<table class="kv"><tbody>{% for k, v in trail %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p class="note">No audit trail (the run has not been audited).</p>{% endif %}
<h4>Environment (environment.json)</h4>
{% if environment %}
<table class="kv"><tbody>{% for k, v in environment %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</tbody></table>
{% else %}<p class="note">environment.json is missing.</p>{% endif %}
</section>

<section id="settings">
<h2>Settings</h2>
<h4>Run config (config.yaml)</h4>
{% if config %}<pre>{{ config }}</pre>{% else %}<p class="note">config.yaml is missing.</p>{% endif %}
{% if evaluation %}<h4>Evaluation</h4>
<table class="kv"><tbody>{% for k, v in evaluation %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% if timings %}<h4>Timings (s)</h4>
<table class="kv"><tbody>{% for k, v in timings %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</tbody></table>{% endif %}
{% for a in audits %}
<details><summary>{{ a.audit|bdi }} ({{ a.dimension }}): settings</summary><pre>{{ a.settings_json }}</pre></details>
{% endfor %}
</section>
<footer>Written by trustrec {{ d.trustrec_version }} ({{ d.format }}); the same content as data is in report.json.</footer>
</main>
</body>
</html>
"""
