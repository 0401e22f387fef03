"""The teacher client: an OpenAI-compatible chat endpoint asked for traces, cached and resumable.

``run_requests(requests, out_dir, TeacherConfig(...))`` answers ``TeacherRequest``s into
``out_dir/responses.jsonl`` (``TeacherResponse`` lines); the openai SDK is imported only when asking.
"""

from .client import dry_run, read_responses, run_requests
from .config import TeacherConfig, TeacherRunConfig
from .records import TeacherRequest, TeacherResponse, split_reasoning

__all__ = ["TeacherConfig", "TeacherRequest", "TeacherResponse", "TeacherRunConfig", "dry_run", "read_responses",
           "run_requests", "split_reasoning"]
