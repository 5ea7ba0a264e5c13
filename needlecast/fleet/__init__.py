"""The sending processes: workers, heartbeats, helper sender processes, who is sending (status) and their metrics.

Any number of workers and schedulers share one store; the store's claims and fences keep their rows apart.
"""
