"""monitor.html's inline SVG charts: well-formed, labels escaped, gaps for missing values."""
import base64
import xml.etree.ElementTree as ET

from tfresp.monitoring.svgplot import line_chart

NS = "{http://www.w3.org/2000/svg}"


def _svg(uri):
    assert uri.startswith("data:image/svg+xml;base64,")
    return ET.fromstring(base64.b64decode(uri.split(",", 1)[1]))


def test_chart_is_well_formed_and_escapes_labels():
    uri = line_chart([0, 1, 2], [('<script>alert(1)</script> "sex"', [0.1, 0.2, 0.15], "solid")],
                     band=("95% CI", [0.05, 0.1, 0.1], [0.2, 0.3, 0.2]), hline=("floor", 0.1))
    root = _svg(uri)
    assert root.tag == NS + "svg" and root.attrib["width"] == "700"
    assert not list(root.iter(NS + "script"))
    texts = [t.text for t in root.iter(NS + "text")]
    assert '<script>alert(1)</script> "sex"' in texts  # escaped in the markup, the literal text when parsed
    assert len(list(root.iter(NS + "polygon"))) == 1 and len(list(root.iter(NS + "circle"))) == 3


def test_missing_values_break_the_line_and_empty_input_draws_axes():
    root = _svg(line_chart([0, 1, 2, 3, 4], [("a", [1.0, 2.0, None, 3.0, float("nan")], "dashed")]))
    lines = list(root.iter(NS + "polyline"))
    assert len(lines) == 1 and len(lines[0].attrib["points"].split()) == 2  # [0, 1]; 3 alone is a point
    assert len(list(root.iter(NS + "circle"))) == 3
    root = _svg(line_chart([], [("a", [], "solid")]))
    assert not list(root.iter(NS + "polyline"))
