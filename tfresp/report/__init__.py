"""The responsibility report: report.json, report.md (model card) and report.html."""
