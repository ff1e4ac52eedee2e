"""Invitations: how a person outside the account's verified domains joins (SPEC F5)."""
