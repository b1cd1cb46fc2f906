"""Utility runs (issue 13): does a snapshot's synthetic data help a downstream task?"""
