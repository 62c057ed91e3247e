"""What ddb2es owns on a shared cluster, and the names and records that go with it.

The one model every command and the stream handler use (docs/spec.md, "Ownership"):
- an index is ddb2es's only when its mapping `_meta` carries `managed_by: ddb2es` AND this
  deployment's name (`mark`). ddb2es writes that mark when it creates an index
  (`create_owned_index`) or when the operator adopts one (`adopt`); the template marks nothing;
- an alias is ours when every index behind it is ours; names starting with `.` never are;
- indices marked by older versions (`managed_by` without a deployment: the old template put that
  on every new index of the cluster) are `legacy`: not ours until adopted;
- every destructive action asks again (`require_owned`) at the moment it acts.

The parts: ownership_marks.py (the mark and the checks), ownership_generations.py (the
generation suffix of blue/green loads, the `-rebuilding` marker alias) and ownership_control.py
(the control index `CONTROL_INDEX`: run locks and the record of the last swap per alias).
Their names are re-exported here. Imports nothing the Lambda runtime lacks: the stream handler
uses these modules too.
"""

from __future__ import annotations

from ddb2es_cli.ownership_control import CONTROL_INDEX as CONTROL_INDEX
from ddb2es_cli.ownership_control import DEFAULT_LEASE_SECONDS as DEFAULT_LEASE_SECONDS
from ddb2es_cli.ownership_control import LockHeld as LockHeld
from ddb2es_cli.ownership_control import RunLock as RunLock
from ddb2es_cli.ownership_control import break_lock as break_lock
from ddb2es_cli.ownership_control import ensure_control_index as ensure_control_index
from ddb2es_cli.ownership_control import last_swap as last_swap
from ddb2es_cli.ownership_control import lock_holders as lock_holders
from ddb2es_cli.ownership_control import record_swap as record_swap
from ddb2es_cli.ownership_control import run_lock as run_lock
from ddb2es_cli.ownership_generations import GENERATION_LEN as GENERATION_LEN
from ddb2es_cli.ownership_generations import GENERATION_RE as GENERATION_RE
from ddb2es_cli.ownership_generations import MAX_INDEX_BYTES as MAX_INDEX_BYTES
from ddb2es_cli.ownership_generations import MAX_TYPE_BYTES as MAX_TYPE_BYTES
from ddb2es_cli.ownership_generations import REBUILD_SUFFIX as REBUILD_SUFFIX
from ddb2es_cli.ownership_generations import base_of as base_of
from ddb2es_cli.ownership_generations import check_generation_room as check_generation_room
from ddb2es_cli.ownership_generations import generation_suffix as generation_suffix
from ddb2es_cli.ownership_generations import generation_time as generation_time
from ddb2es_cli.ownership_generations import generations as generations
from ddb2es_cli.ownership_generations import marked_generations as marked_generations
from ddb2es_cli.ownership_generations import rebuild_marker as rebuild_marker
from ddb2es_cli.ownership_marks import FOREIGN as FOREIGN
from ddb2es_cli.ownership_marks import LEGACY as LEGACY
from ddb2es_cli.ownership_marks import MANAGED_BY as MANAGED_BY
from ddb2es_cli.ownership_marks import MISSING as MISSING
from ddb2es_cli.ownership_marks import OTHER_DEPLOYMENT as OTHER_DEPLOYMENT
from ddb2es_cli.ownership_marks import OWNED as OWNED
from ddb2es_cli.ownership_marks import SYSTEM as SYSTEM
from ddb2es_cli.ownership_marks import NotOwned as NotOwned
from ddb2es_cli.ownership_marks import Ownership as Ownership
from ddb2es_cli.ownership_marks import adopt as adopt
from ddb2es_cli.ownership_marks import aliases_of as aliases_of
from ddb2es_cli.ownership_marks import create_owned_index as create_owned_index
from ddb2es_cli.ownership_marks import current as current
from ddb2es_cli.ownership_marks import deployment_name as deployment_name
from ddb2es_cli.ownership_marks import index_meta as index_meta
from ddb2es_cli.ownership_marks import is_owned as is_owned
from ddb2es_cli.ownership_marks import is_system as is_system
from ddb2es_cli.ownership_marks import mark as mark
from ddb2es_cli.ownership_marks import ownership as ownership
from ddb2es_cli.ownership_marks import require_owned as require_owned
from ddb2es_cli.ownership_marks import status_of_meta as status_of_meta
