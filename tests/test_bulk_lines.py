"""The bulk body the writer builds itself: every metadata line is the JSON of the action's
metadata, whatever the names hold (the helpers' serialisers used to write these lines)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ddb2es_cli.sink import delete_action, index_action, meta_line
from ddb2es_cli.transform import Document

names = st.text(min_size=1, max_size=40)  # quotes, backslashes, control and non-ASCII characters
versions = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(index=names, doc_id=names, version=versions)
def test_index_and_delete_lines_are_the_metadata_as_json(
    index: str, doc_id: str, version: int
) -> None:
    document = Document(index, doc_id, '{"a":1}', "")
    for action in (index_action(document, version), delete_action(index, doc_id, version)):
        line = meta_line(action)
        assert "\n" not in line
        assert json.loads(line) == action[0]


@given(
    meta=st.dictionaries(
        st.text(max_size=10),
        st.one_of(st.text(max_size=10), st.integers(), st.booleans(), st.none(), st.floats(0, 1)),
        max_size=5,
    )
)
def test_any_other_metadata_goes_through_the_json_encoder(meta: dict[str, Any]) -> None:
    action = ({"update": meta}, None)
    assert json.loads(meta_line(action)) == action[0]


def test_non_ascii_names_are_sent_as_utf8_text_not_escapes() -> None:
    line = meta_line(index_action(Document("zürich", '{"pk":"ü"}', "{}", ""), 5))
    assert line == (
        '{"index":{"_index":"zürich","_id":"{\\"pk\\":\\"ü\\"}","version":5,'
        '"version_type":"external_gte"}}'
    )
