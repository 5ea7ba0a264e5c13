"""Campaigns: definitions (load + validate), timing, the planner, the runner."""
