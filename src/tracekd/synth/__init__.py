"""Rule-based generators of synthetic data in the native formats (bAbI text, CoTemp JSONL).

Each generator module defines ``HELP``, ``add_arguments(parser)`` and ``run(args)`` for
``tracekd synth <name>``, plus a pure ``generate(...)`` function for the Python API.
"""

GENERATORS = {"babi": "tracekd.synth.babi", "cotemp": "tracekd.synth.cotemp"}


def generate_into(spec: dict, out_dir, overwrite: bool = False) -> None:
    """Run the generator named by ``spec["generator"]`` (an experiment's SynthSpec as a dict) into ``out_dir``
    (``overwrite``: replace an earlier synth's files there, see ``write_babi``)."""
    from ..errors import ConfigError, did_you_mean

    name = spec["generator"]
    if name == "babi":
        from .babi import write_babi

        write_babi(out_dir, tasks=spec.get("tasks", "all"), n_train=spec["n"], n_test=spec.get("n_test"),
                   seed=spec.get("seed", 0), overwrite=overwrite)
    elif name == "cotemp":
        from .cotemp import write_cotemp

        write_cotemp(out_dir, n=spec["n"], seed=spec.get("seed", 0), overwrite=overwrite)  # the loader splits 80/20
    else:
        raise ConfigError(did_you_mean(name, GENERATORS, "generator"))
