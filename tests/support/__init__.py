"""Shared test helpers: network guard, free ports, loopback addresses, short timeouts."""
