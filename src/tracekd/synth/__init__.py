"""Rule-based generators of synthetic data in the native formats (bAbI text, CoTemp JSONL).

Each generator module defines ``HELP``, ``add_arguments(parser)`` and ``run(args)`` for
``tracekd synth <name>``, plus a pure ``generate(...)`` function for the Python API.
"""

GENERATORS = {"babi": "tracekd.synth.babi", "cotemp": "tracekd.synth.cotemp"}
