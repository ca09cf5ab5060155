"""Campaigns: staff-run appeals with goals, public pages, progress and a public JSON total."""
