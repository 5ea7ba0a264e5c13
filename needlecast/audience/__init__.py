"""Audiences: import (CSV/XLSX), address validation, consent, suppression, segments (pandas)."""
