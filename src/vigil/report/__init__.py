"""Investigation reports: Markdown, JSON and self-contained HTML with charts."""

from vigil.report.render import FORMATS, ReportData, render

__all__ = ["FORMATS", "ReportData", "render"]
