"""Send reports for analysts: pandas DataFrames (for notebooks), terminal tables, CSV/XLSX/HTML/JSON files.

from needlecast.reports import load_report
report = load_report(engine, campaign="spring-guide")
report.funnel, report.timeline, report.links, report.ab, report.health
"""

from needlecast.reports.data import Report, load_report

__all__ = ["Report", "load_report"]
