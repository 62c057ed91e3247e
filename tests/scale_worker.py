"""A worker process of a run whose search client holds one document forever (tests kill it).

Usage: python -m tests.scale_worker DYNAMODB_URL ES_URL PREFIX STATE_TABLE RUN_ID HOLD_ID DIR
Prints `held` once the held document was sent (the worker is then in the middle of its unit).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from ddb2es_cli.clients import make_dynamodb_client, make_search_client
from ddb2es_cli.config import DynamoSettings, SearchSettings, Settings, TemplateSettings
from ddb2es_cli.reindex import ReindexOptions
from ddb2es_cli.scale import work
from ddb2es_cli.sink import BulkOptions
from ddb2es_cli.state.dynamo import DynamoState
from tests.scale_fixtures import HoldOne


def main() -> None:
    dynamodb_url, es_url, prefix, state_table, run_id, hold_id, folder = sys.argv[1:8]
    settings = Settings(
        dynamodb=DynamoSettings(endpoint=dynamodb_url, region="us-east-1"),
        search=SearchSettings(url=es_url),
        index_prefix=prefix,
        template=TemplateSettings(name=f"{prefix}single-shard"),
    )
    ddb = make_dynamodb_client(settings.dynamodb)
    es, _ = make_search_client(settings.search)
    held = HoldOne(es, hold_id)

    def tell() -> None:
        held.held_event.wait()
        print("held", flush=True)

    threading.Thread(target=tell, daemon=True).start()
    options = ReindexOptions(
        bulk=BulkOptions(chunk_size=10, retry_for=3600),
        failures_path=Path(folder) / "failures.ndjson",
        page_limit=10,
    )
    work(
        ddb,
        held,
        settings,
        DynamoState(ddb, state_table, lease_seconds=2.0),
        run_id,
        options,
        threads=2,
    )


if __name__ == "__main__":
    main()
