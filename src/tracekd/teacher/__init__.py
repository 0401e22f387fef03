"""The teacher client: an OpenAI-compatible chat endpoint asked for traces, cached and resumable."""

from .records import TeacherResponse, split_reasoning

__all__ = ["TeacherResponse", "split_reasoning"]
