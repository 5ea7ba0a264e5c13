"""Campaigns by stage: `definition` (the file's model and loader, editor, drafting, sign-off, gate), `plan`
(rules, planner, timing, send time, A/B winner, preview) and `send` (dispatcher, rendering, state, the runner).

Beside them: the context a job loads once (`context.py`), and a campaign's overview and outcome
(`overview.py`, `outcome.py`), which the read models build on. The sending processes that run `send` are
`needlecast.fleet`; nothing here starts a process.
"""
