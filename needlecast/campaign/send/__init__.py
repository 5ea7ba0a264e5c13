"""Sending a campaign: the runner, the dispatcher, rendering, how the dispatcher is wired to a workspace,
`start_send` (how every face starts a send), campaign state and a run's report.

The dispatcher moves ledger rows from queued to sent through the backend (DESIGN.md invariants 1 and 2); it
reaches storage through the delivery store alone (campaign state, intents, heartbeats, rate limits included).
"""
