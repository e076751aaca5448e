"""Preference data: records, formats, validation, tokenisation, batching.

``load_preferences`` reads any supported source and layout into validated records; ``convert`` turns
rankings into pairs and pairs into unpaired feedback; ``save_records`` writes records back as JSONL in
TRL's field names (a lossless round trip), ``write_records`` in the format a path's suffix names.
"""

from .config import DataConfig
from .convert import KINDS, RULES, convert, kind_of, pair_to_unpaired, ranking_to_pairs
from .formats import FORMATS, detect_format
from .implicit import split_transcripts, transcript_to_messages
from .load import LoadResult, load_preferences, stream_preferences
from .records import Demonstration, Message, PreferencePair, Ranking, Text, Unpaired
from .serialize import record_to_dict, save_records
from .splits import load_data, split_by_prompt
from .writers import write_records

__all__ = [
    "FORMATS",
    "KINDS",
    "RULES",
    "DataConfig",
    "Demonstration",
    "LoadResult",
    "Message",
    "PreferencePair",
    "Ranking",
    "Text",
    "Unpaired",
    "convert",
    "detect_format",
    "kind_of",
    "load_data",
    "load_preferences",
    "pair_to_unpaired",
    "ranking_to_pairs",
    "record_to_dict",
    "save_records",
    "split_by_prompt",
    "split_transcripts",
    "stream_preferences",
    "transcript_to_messages",
    "write_records",
]
