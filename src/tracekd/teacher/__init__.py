"""The teacher client: an OpenAI-compatible chat endpoint asked for traces, cached and resumable."""

from .records import TeacherRequest, TeacherResponse, split_reasoning

__all__ = ["TeacherRequest", "TeacherResponse", "split_reasoning"]
