"""Conflation with an existing road map (roadseg conflate)."""
