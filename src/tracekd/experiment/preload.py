"""What a train or generate stage imports, imported once for a whole run on CPU.

Importing torch, transformers, PEFT, TRL and their dependencies takes ~8 s on this project's 2-core machine,
and every stage process paid it again (six times in ``tracekd demo``). The subprocess executor therefore
starts a CPU run's model stages from multiprocessing's fork server with this module preloaded: each stage
is still a process of its own (its memory goes back to the system when it ends) but starts with the
libraries already imported.

Its last act is ``gc.freeze()``: the objects of all those imports move to the collector's permanent generation, as
Python's documentation advises before forking workers. Without it a forked training ran ~6% slower than a fresh
process (139-140 vs 147-148 tok/s, two pairs, 12 steps of the demo's correct arm); with it, the same (157 vs
151-160).

Importing this module must stay fork-safe: it imports, it never runs a torch operation (which would start
OpenMP's thread pool) and never touches a GPU. The modules are those the default student's stages use;
anything else a stage needs it imports itself, as before.
"""

from __future__ import annotations

import gc

import accelerate  # noqa: F401
import datasets  # noqa: F401
import peft  # noqa: F401
import torch  # noqa: F401
import transformers  # noqa: F401
import trl  # noqa: F401
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: F401
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Trainer  # noqa: F401
from transformers.models.llama import modeling_llama  # noqa: F401 - the default student's architecture
from trl import SFTConfig, SFTTrainer  # noqa: F401

from .. import calibration, students  # noqa: F401
from ..train import run as _train_run  # noqa: F401
from . import runner  # noqa: F401

gc.freeze()
