"""Fuzzing a live DICOM peer over loopback with dul-built, mutated associations."""
