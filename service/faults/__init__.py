"""Test endpoints of the backend seed: a slow answer and a deliberate error."""
