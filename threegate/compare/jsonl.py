"""Crash-safe JSON Lines for `threegate compare`: re-exported from `threegate.records`, where they live."""

from threegate.records import FSYNC_S as FSYNC_S
from threegate.records import JsonlWriter as JsonlWriter
from threegate.records import read_jsonl as read_jsonl
from threegate.records import to_jsonable as to_jsonable

__all__ = ["FSYNC_S", "JsonlWriter", "read_jsonl", "to_jsonable"]
