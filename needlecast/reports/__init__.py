"""Send reports for analysts: pandas DataFrames (for notebooks), terminal tables, CSV/XLSX/HTML/JSON files.

from needlecast.reports import load_report
report = load_report(engine, campaign="spring-guide")
report.funnel, report.timeline, report.links, report.ab, report.health

In a notebook (`reports.analysis`): `clinic = needlecast.reports.open("path/to/workspace")`, then
`clinic.compare()`, `clinic.trends()`, `clinic.cohorts()`, `clinic.revenue()`, `clinic.report("spring-guide")`.
"""

from needlecast.reports.analysis import Analysis
from needlecast.reports.analysis import open_analysis as open  # the issue names it reports.open(...)
from needlecast.reports.data import Report, load_report

__all__ = ["Analysis", "Report", "load_report", "open"]
