"""The statistics that sending and the reports share, below both `campaign/` and `reports/`.

- `significance`: the two-proportion z-test and Wilson score intervals;
- `attribution`: the conversion attribution rules (last click, else last delivered, within a window);
- `engagement`: each email's flags from the ledger and the provider events (one fate per email, human opens).
"""
