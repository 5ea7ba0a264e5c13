"""Who may do what: console users and roles, sessions, API keys, the log-in throttle, the audit log."""
