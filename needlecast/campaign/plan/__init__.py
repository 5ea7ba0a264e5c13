"""Planning a campaign: the plan rules, the planner (segment -> plan -> enqueue), timing, send times, preview.

The rules (`rules.py`) decide who gets which email when and who does not; `planner.py` runs them for a send
and enqueues into the ledger; `preview.py` runs them for `needlecast plan` and writes nothing.
"""
