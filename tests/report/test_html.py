"""report.html: escaping of every user string, sanitized snippets, self-contained (no network)."""
import base64
import json
import re
from html.parser import HTMLParser

import pytest

from tests.report.conftest import HOSTILE, synthetic_report
from tfresp.report.derive import derive
from tfresp.report.html import data_uri, render_html
from tfresp.report.sanitize import sanitize_html

PNG_1x1 = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAA"
                           "AABJRU5ErkJggg==")


class _Tags(HTMLParser):
    """Collects every tag and attribute the browser would see."""

    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, k, v or "") for k, v in attrs)


def parse(html):
    p = _Tags()
    p.feed(html)
    return p


def _hostile_report(tmp_path):
    r = synthetic_report(run__description=HOSTILE, run__intended_use=HOSTILE, run__limitations=HOSTILE,
                         run__name='n"><script>x()</script>',
                         data__source__name="<svg onload=alert(1)>",
                         fairness={"sex": {"demographic_parity_difference": 0.1,
                                           "by_group": {"<b onmouseover=alert(1)>g</b>": {"selection_rate": 0.1}}}},
                         explanations={"examples": [{"row": 1, "true": "<i>", "predicted": "x",
                                                     "html": '<p class="t"><span style="background:rgba(0,160,60,0.5)"'
                                                             ' onclick="steal()">good</span><script>bad()</script>'
                                                             '<a href="javascript:alert(1)">link</a>'
                                                             '<img src="http://evil.example/x.png"></p>'}],
                                       "custom_html": "<iframe src='http://evil.example'></iframe><b>bold</b>",
                                       "note": "<script>alert('n')</script>"},
                         custom_section={"text": "<script>alert('c')</script>"})
    r["run"]["config"]["report"] = {"description": HOSTILE}
    return render_html(derive(r), tmp_path)


def test_user_strings_are_escaped_and_inert(tmp_path):
    html = _hostile_report(tmp_path)
    p = parse(html)
    assert "script" not in p.tags and "iframe" not in p.tags and "svg" not in p.tags
    assert not [a for a in p.attrs if a[1].startswith("on")], "no event-handler attributes may survive"
    assert not [a for a in p.attrs if "javascript:" in a[2].lower()]
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html or "&lt;script&gt;alert(&quot;pwned" in html
    assert "&lt;svg onload=alert(1)&gt;" in html
    # the only <img> tags are the report's own data: URIs; no <a href> to anywhere but in-page anchors
    assert all(v.startswith("data:image/") for t, k, v in p.attrs if t == "img" and k == "src")
    assert all(v.startswith("#") for t, k, v in p.attrs if t == "a" and k == "href")


def test_explanation_snippets_keep_formatting_only(tmp_path):
    html = _hostile_report(tmp_path)
    assert '<span style="background: rgba(0,160,60,0.5)">good</span>' in html
    assert "steal()" not in html and "bad()" not in html and "evil.example" not in html
    assert "<b>bold</b>" in html


@pytest.mark.parametrize("snippet,expected", [
    ('<span title="w" onclick="x()">a</span>', '<span title="w">a</span>'),
    ("<script>alert(1)</script>ok", "ok"),
    ('<span style="background:url(http://e.com/x);color:red">a</span>', '<span style="color: red">a</span>'),
    ("<p>1 < 2 & 3</p>", "<p>1 &lt; 2 &amp; 3</p>"),
    ("<b><i>unclosed", "<b><i>unclosed</i></b>"),
    ("</span>stray", "stray"),
    ('<img src=x onerror="alert(1)">', ""),
    ("<style>body{display:none}</style>text", "text"),
])
def test_sanitizer(snippet, expected):
    assert sanitize_html(snippet) == expected


def test_self_contained_no_network(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "own.png").write_bytes(PNG_1x1)
    r = derive(synthetic_report(plots={"training": "plots/own.png"}))
    html = render_html(r, tmp_path)
    p = parse(html)
    assert "link" not in p.tags and "script" not in p.tags
    urls = [v for _, k, v in p.attrs if k in ("src", "href", "action", "data", "poster")]
    assert urls and all(u.startswith(("data:", "#")) for u in urls)
    assert "@import" not in html and "url(" not in html.split("</style>")[0]
    assert "default-src 'none'" in html
    assert base64.b64encode(PNG_1x1).decode() in html
    # derived plots from report numbers are embedded as well (robustness sweep, fairness groups, scorecard)
    assert sum(1 for t, k, v in p.attrs if t == "img" and k == "src") >= 4


def test_images_outside_the_run_dir_are_not_embedded(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG_1x1)
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    assert data_uri(run, "../secret.png") is None
    assert data_uri(run, str(secret)) is None
    assert data_uri(run, "plots/missing.png") is None
    (run / "plots" / "notes.txt").write_text("x")
    assert data_uri(run, "plots/notes.txt") is None


def test_real_run_html(report_run):
    html = (report_run / "report.html").read_text()
    report = json.loads((report_run / "report.json").read_text())
    p = parse(html)
    assert "script" not in p.tags
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in html
    # numbers in the html are the report's numbers
    acc = report["evaluation"]["test"]["accuracy"]
    assert f"{acc:.4f}" in html
    eo = report["fairness"]["sex"]["equalized_odds_difference"]
    assert f"{eo:.4f}" in html
    assert re.search(r"Release gates.*PASSED", html, re.S)
    assert len([1 for t, k, v in p.attrs if t == "img" and v.startswith("data:image/png;base64,")]) >= 2


def test_minimal_report_renders_everywhere(tmp_path):
    """A run with no evaluation (e.g. MLM pretraining) and every concern off still renders and validates."""
    from tfresp.report.markdown import render_markdown
    from tfresp.report.schema import validate

    r = derive(synthetic_report(evaluation=None, privacy=None, fairness=None, robustness=None, compression=None,
                                data__sensitive=[], data__splits={"train": {"rows": 10}, "test": None},
                                training__history={}))
    assert validate(r) == []
    html = render_html(r, tmp_path)
    assert "No evaluation section in this run" in html and "no formal privacy claim" in html
    md = render_markdown(r)
    assert "_No evaluation in this run._" in md


def test_unknown_sections_and_keys_render_generically(tmp_path):
    rng = __import__("random").Random(0)

    def rand(depth):
        kind = rng.choice(["dict", "list", "num", "str", "none", "bool"] if depth < 4 else ["num", "str"])
        if kind == "dict":
            return {f"k{depth}_{i}<&>": rand(depth + 1) for i in range(rng.randint(0, 4))}
        if kind == "list":
            return [rand(depth + 1) for _ in range(rng.randint(0, 20))]
        return {"num": rng.random(), "str": "<u>s</u>", "none": None, "bool": True}[kind]

    extra = {"a": rand(0), "b": [{"x": 1, "y": {"z": [1, 2]}}, {"x": 2}], "n": float("1e-9"),
             "s<&>": "<u>s</u>"}
    r = derive(synthetic_report(custom_audit=extra, robustness__notes=rand(0), compression__extra=rand(1)))
    html = render_html(r, tmp_path)
    assert "<h3>custom_audit</h3>" in html
    assert "s&lt;&amp;&gt;" in html and "&lt;u&gt;s&lt;/u&gt;" in html and "<u>" not in html
    assert "1e-09" in html


def _fairness_verdict_report(status="worse"):
    r = synthetic_report()
    r["fairness"]["inputs"] = {"sensitive_as_inputs": ["sex"], "proxies": [
        {"feature": "relationship<b>", "attribute": "sex", "group": "Female", "auc": 0.8771}],
        "proxies_method": "one-vs-rest ROC-AUC"}
    r["fairness"]["mitigation"] = {"name": "threshold", "verdict": {
        "status": status, "target": "equalized_odds_difference <= 0.05 on test", "before": 0.0812, "after": 0.0934,
        "statement": "made equalized_odds_difference worse on test: 0.0812 -> 0.0934 <i>(x)</i>"}}
    return r


def test_fairness_verdict_and_proxies_are_rendered_and_escaped(tmp_path):
    html = render_html(derive(_fairness_verdict_report()), tmp_path)
    section = html[html.index('<section id="fairness">'):html.index('<section id="robustness">')]
    # the verdict: its status as a badge (not "met": a finding), its statement escaped, target and numbers
    assert '<span class="badge fail">worse</span>' in section
    assert "made equalized_odds_difference worse on test: 0.0812 -&gt; 0.0934 &lt;i&gt;(x)&lt;/i&gt;" in section
    assert "target: equalized_odds_difference &lt;= 0.05 on test" in section
    # the proxy row (feature escaped) and the sensitive attribute used as an input
    assert "<td><code>relationship&lt;b&gt;</code></td><td>sex</td><td>Female</td><td class=\"num\">0.877</td>" \
        in section
    assert "Sensitive attributes used as model inputs: sex" in section
    assert "<i>(x)</i>" not in html and "relationship<b>" not in html
    met = render_html(derive(_fairness_verdict_report("met")), tmp_path)
    assert '<span class="badge pass">met</span>' in met


def test_fairness_proxies_not_screened_say_why(tmp_path):
    r = synthetic_report()
    r["fairness"]["inputs"] = {"sensitive_as_inputs": [], "proxies": None,
                               "proxies_note": "not computed under differential privacy"}
    html = render_html(derive(r), tmp_path)
    assert "Proxies: not computed under differential privacy" in html
    assert "No feature was found to be a strong proxy" not in html
    r["fairness"]["inputs"] = {"sensitive_as_inputs": [], "proxies": []}
    assert "No feature was found to be a strong proxy" in render_html(derive(r), tmp_path)
