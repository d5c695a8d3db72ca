"""Seeing a study: Plotly figures and the self-contained HTML reports (called by the CLI)."""
