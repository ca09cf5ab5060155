"""Reporting: read-only figures and CSV exports across donations, campaigns and sponsorship.

Nothing but the staff views imports this package (docs/reports.md has every formula).
"""
