"""Rule-based generators of synthetic data in the native formats (bAbI text, CoTemp JSONL).

Each generator module defines ``HELP``, ``add_arguments(parser)`` and ``run(args)`` for
``tracekd synth <name>``, a pure ``generate(...)`` function for the Python API, and
``write_from_spec(spec, out_dir, overwrite)`` for an experiment's ``synth:`` entry.
"""

from ..registry import Registry

#: generator name -> its module
GENERATORS: Registry = Registry("generator")
GENERATORS.add("babi", "tracekd.synth.babi", "bAbI-style stories for the method's tasks")
GENERATORS.add("cotemp", "tracekd.synth.cotemp", "CoTemp-style questions over time-stamped facts")


def generate_into(spec: dict, out_dir, overwrite: bool = False) -> None:
    """Run the generator named by ``spec["generator"]`` (an experiment's SynthSpec as a dict) into ``out_dir``
    (``overwrite``: replace an earlier synth's files there, see ``write_babi``)."""
    GENERATORS.get(spec["generator"]).write_from_spec(spec, out_dir, overwrite=overwrite)
