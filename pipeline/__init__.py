"""The multi-camera re-ID runtime: sources, detection, tracking, re-ID, matching, store, sinks, runner, CLI.

Its bottom floor (errors, messages, typed_config, registry, atomic, motchallenge, ort_options) imports
nothing else of the project; reid/ and detectors/ import from pipeline/ only these. tests/test_layout.py
holds the rules.
"""
