"""Account settings (SPEC F13): the account's invite controls."""
