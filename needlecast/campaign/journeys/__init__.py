"""Journeys: campaigns of `kind: journey`, whose steps are the nodes of a graph each person walks through.

- `model`: the nodes (send, wait, wait_until, branch, split, goto, exit), entries, re-entry, the goal;
- `loader`: the graph read from the campaign file, every successor checked, cycles without a wait refused;
- `timing`: when a person arriving at a node is due there (delays, time of day and dates in their zone);
- `conditions`: branch and entry conditions judged for many people at once;
- `entries`: who starts a journey now, and with which entry number;
- `sweeper`: the one job that advances every journey's due positions, in set operations, exactly once;
- `edits`: what a change of a live journey does to the people waiting, moving them; check and repair;
- `leaving`: a person leaves, and their emails still queued are held back with the reason, in one transaction;
- `forecast`: each send node's expected emails per day from where people are now (upper bounds said);
- `outlook`: what `needlecast plan` says of a journey or a sequence (the forecast, the people at each node).

Positions and versions live in the store (`needlecast.store.journeys`, migration 0014).
"""
