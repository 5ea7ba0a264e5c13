"""Developer tools, for tests, benchmarks and the demo; the library never imports them (only the command line).

- `demo.py`, `demo_campaigns.py`: `needlecast demo`, a workspace with an audience, campaigns and their events;
- `synth.py`, `events.py`: synthetic audiences and simulated SendGrid events;
- `sendgrid_sink.py`: a SendGrid-compatible HTTP sink on loopback;
- `stopwatch.py`, `timed.py`: stage timings taken from outside (`needlecast send --timings`, the benchmarks).
"""
