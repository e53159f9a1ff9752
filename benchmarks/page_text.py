"""The prose of docs/performance.md around the generated figures (``report.page``)."""

PAGE_HEAD = """# Performance

How fast `persistence` is against what users would otherwise pick: SQL written by
hand with psycopg 3 (sync, and asyncio for `AsyncDatabase`), raw redis-py for leases,
and LangGraph's `PostgresStore`. All sides run in the same run, on the same PostgreSQL
server and Redis, with the same payloads; ours runs as production does, as the runtime
role under row-level security.

## Reproduce

```bash
.venv/bin/pip install -e '.[bench]'     # langgraph-checkpoint-postgres, psycopg-pool
.venv/bin/python -m benchmarks --output docs/performance.md   # full run, ~10 minutes
.venv/bin/python -m benchmarks --quick                        # smoke run, under a minute
.venv/bin/python -m benchmarks --only 'state.*' --ops 1000    # some cases, more operations
.venv/bin/python -m benchmarks --only 'async.*'               # the asyncio section only
.venv/bin/python -m benchmarks --only 'cache.*'               # the read cache: cases, section
.venv/bin/python -m benchmarks --only 'langgraph.*'           # our LangGraph adapter vs its peer
.venv/bin/python -m benchmarks --list                         # the case keys
.venv/bin/python -m benchmarks --save run.pkl                 # keep the figures ...
.venv/bin/python -m benchmarks --render run.pkl --output docs/performance.md  # ... render later
.venv/bin/python -m benchmarks.profile state.save 1000        # cProfile (CPU time) of ours
.venv/bin/python -m benchmarks.profile async.state.load 1000  # ... of an asyncio case
```

It needs PostgreSQL on 127.0.0.1:5432 (the `postgres` superuser creates a throwaway
database, an owner role and a runtime role, like the test fixtures) and Redis on
127.0.0.1:6379 (keys under a unique prefix); everything is dropped at the end.
`PERSISTENCE_BENCH_DATABASE_URL` and `PERSISTENCE_BENCH_REDIS_URL` point elsewhere.
"""

METHOD = """## Method

- Each operation runs `--ops` times per side per round for `--repeat` rounds, ours and
  the baseline alternating (and who goes first alternating), after a warm-up. ops/s is
  operations over wall time of the round; p50 and p99 are per-operation latencies;
  every figure is the median over the rounds, and the ratio is the median of the
  per-round ratios ours / baseline (above 1: ours is faster). The full profile runs
  21 short rounds of 100 operations rather than 5 of 400: a write waits for the
  server's WAL flush on a disk this machine shares, whose stalls last long enough to
  slow one side's whole round, and short alternating rounds leave such a stall to the
  median instead.
- Every operation of ours is a whole unit of work as a service would use it
  (`with db.unit_of_work(tenant=...)`: enter the tenant, the operation, commit), on a
  pooled connection. Raw baselines use one psycopg connection, one transaction per
  operation that sets the scope token for RLS (`set_config('persistence.scope', ...,
  true)`: the policies verify it on every statement, theirs as ours, migration 0010),
  prepared statements, and do the same work: JSON serialized and SHA-256
  checksummed, checksums verified on read, gap-free version numbers (head row bumped
  and version inserted in one statement).
- Round trips: libpq's protocol trace on both sides, counting each turn from
  client messages to server replies (one wait for the server; pipelined statements
  share one); `stmt` is what SQLAlchemy's events see: `before_cursor_execute` (our
  prepared statements on the driver connection report there too) plus the `begin` /
  `commit` events of transactions SQLAlchemy manages. A unit of work on PostgreSQL
  sends `BEGIN` and the tenant entry with its first statement, in one pipeline, and
  commits straight through libpq, so an empty one sends nothing. Client CPU is the
  benchmark process's CPU time per operation (the driver's and ours; the server's is
  not included).
- LangGraph's `PostgresStore` (autocommit, pipelined `put`/`get`) runs in its own
  database on the same server; it keeps one value per key, we keep every version.
"""


TUNING = """## How ours runs (what was tuned, issues 7 and 11)

- **One executor for every statement** (`persistence/_executor.py`): each operation's
  SQL is SQLAlchemy Core built from the models' tables, defined once as a `Statement`
  and compiled once per dialect (SQL text, parameter order, bind and result processors
  kept). On PostgreSQL it goes straight through libpq (`persistence/_wire.py`: psycopg's
  `Transformer` dumps the parameters and loads the rows, no cursor) as a server-side
  prepared statement of its own per connection; on SQLite on the
  unit of work's `sqlite3` connection. Statements whose SQL depends on the call (a
  page query with optional filters, an `IN` list) go through SQLAlchemy's own
  execution and its compiled cache on the same connection. Every statement shares the
  transaction, the tenant setting and row-level security, errors are translated in one
  place, and SQLAlchemy's `before_cursor_execute` / `after_cursor_execute` listeners
  (tracing, statement counts) see it. `prepared_statements=False` turns server-side
  preparing off (for PgBouncer in transaction mode before 1.21). A state save is one
  statement on PostgreSQL (head row, version and tags as data-modifying CTEs), a store
  set too (the item upsert, with the store row created in a CTE of it the first time).
- **BEGIN with the tenant entry, and COMMIT, straight through libpq**
  (`persistence/_deferred.py`, `persistence/_wire.py`, issue 13): a unit of work of a
  scope the process has entered before sends `BEGIN`, its scope token set and its
  first statement as one libpq pipeline (one round trip, all three prepared), and
  `COMMIT` as one simple-protocol query; psycopg sees the transaction open and sends no
  `BEGIN` of its own. psycopg's own pipeline did the same in the same round trip for
  about 100 µs more client CPU per unit of work (its cursor and result machinery).
- **Pool pre-ping → idle-only ping** (`persistence/_pool.py`, `pool_ping_after`,
  default 1 s): `pool_pre_ping` cost a round trip on every unit of work; now only a
  connection idle for longer is pinged (and replaced if dead).
- **No ORM session unless asked for** (`persistence/uow.py`): a PostgreSQL unit of work
  runs on a pooled `Connection` and builds its `Session` (bound to that connection,
  same transaction) only when a repository or `uow.session` needs one; savepoints emit
  `SAVEPOINT` at once so statements that bypass the session are covered by them.
- **Connections kept warm between units of work** (`persistence/_warm.py`, issue 12):
  a tenant unit of work that ended cleanly leaves its connection checked out, parked
  in the runtime pool, and the next one takes it without a pool checkout and checkin
  (a `Connection`, the pool proxy and the pool events each; on asyncio a greenlet
  each). The pool counts parked connections as idle and checks them in as soon as
  any checkout begins, so nobody waits for one (see
  [tenancy](tenancy.md#connections-stay-warm-between-units-of-work)).
- Where the remaining gap is: the unit of work's client CPU (reading the tenant entry
  row, building records, exact-JSON
  validation of what it writes), and the tenant entry's server time
  (a scope new to the process calls `persistence_enter()`, which verifies its token and
  resolves it; the raw baselines set a token they already have).
  `python -m benchmarks.profile CASE` shows where one case's client CPU goes.

### The asyncio API (issue 12)

- `AsyncDatabase` runs the same executor, repositories and statements as `Database`
  (the sync modules are generated from the asyncio ones), on psycopg's
  `AsyncConnection`: the same round trips (`BEGIN` with the tenant entry, the statement,
  `COMMIT`), the same prepared statements and server work as its baseline.
- What it spent beyond the sync API, per unit of work, before the two changes below
  (found with callgrind instruction counts and system-call counts, which a shared
  machine does not disturb as it does timings; an empty unit of work cost about 600 µs
  of client CPU against 330 µs for the raw baseline here): SQLAlchemy's async pool
  checkout and checkin, each in a new greenlet (`greenlet_spawn`: a fresh frame stack
  faulted in and unmapped, two page faults and four system calls per unit of work),
  and the end of the transaction in a task of its own so that a cancellation cannot
  cut it (`asyncio.shield`: a task and three more event-loop iterations).
- **Connections kept warm** (above): a unit of work that finds one parked sends no
  pool checkout or checkin, so no greenlet either.
- **A shield that spawns its task only when needed** (`persistence/_aio.shielded`):
  the end of the transaction runs in the caller's task, each future it waits for
  watched through a stand-in future; a cancellation cancels the stand-in, the caller
  sees `CancelledError` at once, and only then does the rest move to a task of its own.
- **Artifact payloads read in binary format** (`Statement(binary=True)`): a 1 KiB
  `bytea` comes as its bytes, not hex text twice its size (both APIs).
- Not chosen: `psycopg_pool.AsyncConnectionPool` under the tenant unit of work. A
  prototype saved about what the warm connections save, but would move the tenant
  pool out of SQLAlchemy's (`db.engine.pool`, its hooks, its errors) for the asyncio
  API alone.
"""


ASYNC_METHOD = """### The asyncio section

- `AsyncDatabase` against raw psycopg `AsyncConnection` (one connection, autocommit,
  transactions explicit), on one event loop (asyncio's default loop), one call awaited after the
  other; timed, counted and judged like the sync cases (a round of ours, a round of the
  baseline, alternating; client CPU is the process's CPU time per operation, the event
  loop's included).
- The baseline does the same work in the same round trips as a unit of work: `BEGIN`
  and the scope token set in one simple-protocol query (`BEGIN; SELECT
  set_config('persistence.scope', '<token>', true)`, as ours sends for a scope it
  entered before), the operation's statement prepared, `COMMIT`; the same SQL,
  orjson and SHA-256 checks as the sync baselines. (The sync baselines set a token
  they have instead, in a round trip of its own, so the two tables do not compare row
  by row.)
- 64 tasks on 8 connections: ours is `AsyncDatabase(pool_size=8, max_overflow=0)`,
  the baseline the same work on `psycopg_pool.AsyncConnectionPool(min_size=8,
  max_size=8)`, 64 tasks of one process sharing it; throughput is operations over the
  round's wall time.
"""

ASYNC_OPERATIONS_INTRO = (
    "`AsyncDatabase` against raw psycopg `AsyncConnection` doing the same work in the same "
    "round trips (`BEGIN` with the tenant entry, the statement, `COMMIT`), one call after "
    "the other on one event loop."
)

CACHE_INTRO = (
    "The read cache ([cache](cache.md)) on the run's throwaway database and Redis prefix, "
    "default settings unless said; every figure below measured in this run "
    "({seconds:.0f} s)."
)

LANGGRAPH_INTRO = (
    "`persistence.langgraph` (`AsyncPersistenceSaver`, `AsyncPersistenceStore` on "
    "`AsyncDatabase`: the runtime role under row-level security, one unit of work per "
    "call) against langgraph-checkpoint-postgres (`AsyncPostgresSaver`, "
    "`AsyncPostgresStore`, each on the one autocommit connection of its "
    "`from_conn_string`) in a database of its own on the same server, both on one event "
    "loop, one call awaited after the other, LangGraph's default serializer on both. "
    "The graph: a `StateGraph` of 5 async nodes in a chain whose state is 2 KiB of prose "
    "(each node rewrites 4 characters of it) and a counter; one operation invokes it on a "
    "new thread, then once more on that thread (the text read back from its checkpoint). "
    "{rounds} rounds of each workload, ours and the peer alternating (who goes first too), "
    "after a warm-up; medians over the rounds, the ratio the median of the per-round "
    "ratios. Client CPU is the process's CPU time per operation (the event loop's and "
    "LangGraph's included). {seconds:.0f} s."
)
