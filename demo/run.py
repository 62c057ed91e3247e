"""`make demo`: what ddb2es is for, in nine steps against the local stack.

Each step prints one line saying what it proves, then runs the real command. Halfway through,
the demo changes data behind the tool's back (as a bug, a manual fix or a lost stream record
would), and `drift` finds it and `drift --repair` puts it right.

Run by the Makefile with DDB2ES_DYNAMODB_ENDPOINT and DDB2ES_ES_URL set to the local stack.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3

CONFIG = str(Path(__file__).with_name("ddb2es.toml"))
ORDERS = "ddb2es-demo-orders"
ADDED_PK = "added-behind-the-tools-back"


def main() -> int:
    dynamodb_port, es_port, items = sys.argv[1], sys.argv[2], sys.argv[3]
    ddb_url = f"http://127.0.0.1:{dynamodb_port}"
    es_url = f"http://127.0.0.1:{es_port}"
    os.environ.update(DDB2ES_DYNAMODB_ENDPOINT=ddb_url, DDB2ES_ES_URL=es_url)
    os.environ.setdefault("AWS_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")

    step(1, "DynamoDB Local and an OpenSearch-compatible server run on loopback ports")
    ddb2es("local", "up", "--dynamodb-port", dynamodb_port, "--es-port", es_port)
    step(2, f"sample tables: {items} items over 3 tables, every DynamoDB type, several TYPEs")
    ddb2es("local", "seed", "--items", items, "--yes")
    step(3, "one index template (pattern demo-*) shapes every index ddb2es creates")
    ddb2es("--config", CONFIG, "template", "apply")
    step(4, "doctor checks endpoints, tables, streams and the template before anything writes")
    ddb2es("--config", CONFIG, "doctor")
    step(5, "reindex: a parallel scan of each table becomes one index per TYPE")
    ddb2es("--config", CONFIG, "reindex", "--all")
    step(6, "blue/green reload: new indices built aside, aliases swapped in one atomic call")
    ddb2es("--config", CONFIG, "reload", "--all", "--strategy", "blue-green", "--yes")
    step(7, "a change in DynamoDB reaches the index through the stream handler (the Lambda's code)")
    changed, index = change_an_order(ddb_url)
    print(f"    set status = 'changed-by-the-demo' on order {changed} in DynamoDB")
    ddb2es("--config", CONFIG, "stream", "--all", "--until-caught-up")
    status = document_field(es_url, index, changed, "status")
    print(f"    its document in {index} now says status = {status!r}")

    step(8, "break things behind the tool's back: no stream consumer is running now")
    added = add_item_in_dynamodb(ddb_url)
    print(f"    put item {added} into {ORDERS} directly (its document does not exist)")
    index, doc_id = delete_a_document(es_url)
    print(f"    deleted document {doc_id} from index {index} directly")
    step(9, "drift compares both sides key by key and finds both (exit 3: differences)")
    ddb2es("--config", CONFIG, "drift", "--all", "--full", "--refresh", expect=(3,))
    step(10, "drift --repair re-reads the items (consistent reads) and rewrites the documents")
    ddb2es("--config", CONFIG, "drift", "--all", "--full", "--refresh", "--repair", "--yes")
    step(11, "drift again: DynamoDB and the indices agree (exit 0)")
    ddb2es("--config", CONFIG, "drift", "--all", "--full", "--refresh")

    print(
        f"""
Where to look next:
  ddb2es --help, ddb2es <command> --help     every option, with an example
  README.md (Commands, Configuration)        what each command guarantees; demo/ddb2es.toml
  curl '{es_url}/_cat/aliases?v'   the aliases blue/green swapped
  aws dynamodb list-tables --endpoint-url {ddb_url}   (any credentials: -sharedDb)
  make demo-down                             stops the servers (they keep running until then)"""
    )
    return 0


def step(number: int, proves: str) -> None:
    print(f"\n==> {number}. {proves}", flush=True)


def ddb2es(*args: str, expect: tuple[int, ...] = (0,)) -> None:
    """Run the real CLI, showing the command as a user would type it."""
    print("$ ddb2es " + shlex.join(args).replace(CONFIG, "demo/ddb2es.toml"), flush=True)
    code = subprocess.run([sys.executable, "-m", "ddb2es_cli", *args], check=False).returncode
    if code not in expect:
        print(f"demo: ddb2es {args[-1]} exited with {code} (expected {expect})", file=sys.stderr)
        raise SystemExit(code or 1)


def add_item_in_dynamodb(ddb_url: str) -> str:
    """Copy an order under a new key: DynamoDB has it, the index does not."""
    client = _dynamodb(ddb_url)
    item = client.scan(TableName=ORDERS, Limit=1)["Items"][0]
    item["pk"] = {"S": ADDED_PK}
    client.put_item(TableName=ORDERS, Item=item)
    return ADDED_PK


def change_an_order(ddb_url: str) -> tuple[str, str]:
    """An ordinary application write, which the stream records; returns (pk, its index)."""
    client = _dynamodb(ddb_url)
    item = client.scan(TableName=ORDERS, Limit=1)["Items"][0]
    client.update_item(
        TableName=ORDERS,
        Key={"pk": item["pk"]},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "changed-by-the-demo"}},
    )
    kind = item.get("TYPE", {}).get("S", "default").lower()
    return str(item["pk"]["S"]), f"demo-{kind}"


def document_field(es_url: str, index: str, pk: str, field: str) -> Any:
    """One field of an order's document, read through its alias (the live generation)."""
    doc_id = json.dumps({"pk": pk}, separators=(",", ":"))  # the key JSON is the document id
    quoted = urllib.parse.quote(doc_id, safe="")
    return _http(f"{es_url}/{index}/_doc/{quoted}", "GET")["_source"].get(field)


def _dynamodb(ddb_url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=ddb_url, region_name=os.environ["AWS_REGION"])


def delete_a_document(es_url: str) -> tuple[str, str]:
    """Delete one order document in the search server: DynamoDB keeps the item."""
    query = json.dumps({"size": 1, "query": {"exists": {"field": "pk"}}}).encode()
    hit = _http(es_url + "/demo-order/_search", "POST", query)["hits"]["hits"][0]
    index, doc_id = hit["_index"], hit["_id"]
    quoted = urllib.parse.quote(doc_id, safe="")
    _http(f"{es_url}/{index}/_doc/{quoted}?refresh=true", "DELETE")
    return index, doc_id


def _http(url: str, method: str, body: bytes | None = None) -> Any:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    sys.exit(main())
