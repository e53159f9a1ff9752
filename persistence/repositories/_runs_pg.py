"""The run repository's hot statements in PostgreSQL SQL, run on the driver.

Each is one statement that also appends the run's history entry (a data-modifying
CTE), the same work the SQLAlchemy path in :mod:`persistence.repositories.runs` does
for SQLite, written out so :mod:`persistence._driver` can run it as a prepared
statement without SQLAlchemy's per-call expression building and execution cost.

* ``START`` checks that the workflow (and the parent run) exist and inserts the
  ``pending`` run unless its id is taken; it always returns one row: the two checks,
  then the run's columns (NULL when nothing was inserted).
* ``claim_sql`` takes the oldest due run (``FOR UPDATE SKIP LOCKED``) and marks it
  ``running``; ``move_sql`` moves one run to a status, only from the statuses
  :data:`ALLOWED_FROM` lists. Both return the updated run, or no row.

Parameters: ``t`` and ``w`` (tenant and workspace ids), ``now`` (the client's UTC
time, like every timestamp the repository writes), ``worker`` and ``note`` (the history
entry's), then those of each statement.
"""

from __future__ import annotations

from persistence.models.runs import CLAIMABLE_WHERE
from persistence.repositories._runs import ALLOWED_FROM, RUN_COLUMNS

__all__ = ["EXCEPTION", "RESULT", "START", "claim_sql", "move_sql"]

_COLUMNS = ", ".join(column.name for column in RUN_COLUMNS)
_SCOPE = "tenant_id = %(t)s::uuid AND workspace_id = %(w)s::uuid"


def _logged(status: str, worker: str = "%(worker)s::text", note: str = "%(note)s::text") -> str:
    """The CTE that appends the history entry of the run the ``moved`` CTE returns."""
    return f"""logged AS (
    INSERT INTO run_history (tenant_id, workspace_id, run_id, seq, status, at, worker, note)
    SELECT %(t)s::uuid, %(w)s::uuid, id, history_seq, '{status}', %(now)s::timestamptz,
           {worker}, {note}
    FROM moved
)"""


START = f"""WITH refs AS (
    SELECT EXISTS (SELECT 1 FROM workflows WHERE {_SCOPE} AND name = %(workflow)s::text)
               AS workflow_found,
           %(parent)s::text IS NULL
               OR EXISTS (SELECT 1 FROM runs WHERE {_SCOPE} AND id = %(parent)s::text)
               AS parent_found
), moved AS (
    INSERT INTO runs (tenant_id, workspace_id, id, workflow, status, args, args_codec,
                      args_checksum, tags, parent_run_id, worker, attempts, history_seq,
                      not_before, created_at, updated_at)
    SELECT %(t)s::uuid, %(w)s::uuid, %(id)s::text, %(workflow)s::text, 'pending',
           %(args)s::bytea, %(codec)s::text, %(checksum)s::text, %(tags)s::text,
           %(parent)s::text, NULL, 0, 1, %(now)s::timestamptz, %(now)s::timestamptz,
           %(now)s::timestamptz
    FROM refs WHERE workflow_found AND parent_found
    ON CONFLICT (tenant_id, workspace_id, id) DO NOTHING
    RETURNING {_COLUMNS}
), {_logged("pending", worker="NULL", note="NULL")}
SELECT refs.workflow_found, refs.parent_found, moved.*
FROM refs LEFT JOIN moved ON TRUE"""


# The literal status predicate matches the partial claim index even in generic plans.
_CLAIM = f"""WITH moved AS (
    UPDATE runs SET status = 'running', worker = %(worker)s::text, attempts = attempts + 1,
                    history_seq = history_seq + 1, updated_at = %(now)s::timestamptz
    WHERE {_SCOPE} AND {CLAIMABLE_WHERE} AND id = (
        SELECT id FROM runs
        WHERE {_SCOPE} AND {CLAIMABLE_WHERE} AND not_before <= %(now)s::timestamptz{{workflow}}
        ORDER BY not_before, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING {_COLUMNS}
), {_logged("running")}
SELECT {_COLUMNS} FROM moved"""

_CLAIM_SQL = {
    False: _CLAIM.format(workflow=""),
    True: _CLAIM.format(workflow=" AND workflow = %(workflow)s::text"),
}


def claim_sql(of_workflow: bool) -> str:
    """The claim statement, of any workflow or (with a ``workflow`` parameter) of one."""
    return _CLAIM_SQL[of_workflow]


#: The columns ``set_result`` and ``set_exception`` write with their move, and their types.
RESULT = {"result": "bytea", "result_codec": "text", "result_checksum": "text"}
EXCEPTION = {"exception_type": "text", "exception_message": "text", "exception_traceback": "text"}
_NOT_BEFORE = {"not_before": "timestamptz"}  # retrying: when claim may take the run again


def _move(target: str, extra: dict[str, str]) -> str:
    sets = [f"status = '{target}'", "updated_at = %(now)s::timestamptz"]
    sets.append("history_seq = history_seq + 1")
    if target == "running":
        sets += ["attempts = attempts + 1", "worker = %(worker)s::text"]
    else:  # the worker is kept unless one is given
        sets.append("worker = COALESCE(%(worker)s::text, worker)")
    sets += [f"{column} = %({column})s::{cast}" for column, cast in extra.items()]
    allowed = ", ".join(f"'{status}'" for status in ALLOWED_FROM[target])
    return f"""WITH moved AS (
    UPDATE runs SET {", ".join(sets)}
    WHERE {_SCOPE} AND id = %(id)s::text AND {f"status IN ({allowed})" if allowed else "FALSE"}
    RETURNING {_COLUMNS}
), {_logged(target)}
SELECT {_COLUMNS} FROM moved"""


_MOVES: list[tuple[str, dict[str, str]]] = [
    (target, {}) for target in ALLOWED_FROM if target != "retrying"
]
_MOVES += [("retrying", _NOT_BEFORE), ("succeeded", RESULT), ("failed", EXCEPTION)]
_MOVE_SQL = {(target, frozenset(extra)): _move(target, extra) for target, extra in _MOVES}


def move_sql(target: str, extra: frozenset[str]) -> str:
    """The statement moving a run to ``target`` that also writes the ``extra`` columns
    (none; :data:`RESULT` or :data:`EXCEPTION`; ``not_before`` with ``retrying``)."""
    return _MOVE_SQL[target, extra]
