"""Sending a campaign: the runner, the dispatcher, request intents, rendering, campaign state and a run's report.

The dispatcher moves ledger rows from queued to sent through the backend (DESIGN.md invariants 1 and 2).
"""
