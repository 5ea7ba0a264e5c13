"""Tools for tests, benchmarks and the demo: synthetic audiences, a SendGrid-compatible sink."""
