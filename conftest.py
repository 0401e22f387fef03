"""Root conftest: doctest collection over src/ skips modules whose optional extra is not installed."""

import importlib.util

collect_ignore_glob = []
if importlib.util.find_spec("vllm") is None:
    collect_ignore_glob.append("src/tracekd/generate/vllm*.py")
