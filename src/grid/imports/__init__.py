"""Continuous import from every source (issue 11): readers, mappings, positions, quarantine."""
