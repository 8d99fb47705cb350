"""Signal receivers of the back office (audit of log-ins is wired here)."""
