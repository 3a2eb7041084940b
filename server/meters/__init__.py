"""Meters and their readings: the read API of the AMI path."""
