"""Drawings people would rather look at than read: BEV scenes with boxes."""
