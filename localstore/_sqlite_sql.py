"""The SQL of the SQLite backend: the schema of a store file and every statement.

Statements are named constants, as the backend's methods use them. Times are
integers, microseconds since the Unix epoch; ``:now`` is the call's time. The
statements run on every call take positional parameters: binding a tuple costs
less than a dict.
"""

from __future__ import annotations

SCHEMA_VERSION = 2
APPLICATION_ID = 0x4C53544F  # "LSTO"

#: Expired rows a purge removes at most, so no single write pays for many.
_PURGE_BATCH = 256

#: The time now in epoch microseconds, to the millisecond, from SQLite's own
#: clock (the system's, as Python's): a statement reads it once it holds the
#: write lock, so a key written after a wait for another writer gets the time
#: of the write, and its TTL counts from then. ``julianday`` counts whole
#: milliseconds; rounding undoes the float's error. (A Python function defined
#: on the connection would cost each write some 0.4 µs more, a twentieth of it.)
NOW = "CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000"

# The value comes last: a large one spills into overflow pages, and a column
# after it (expires_at, checked by every read) would cost reading them all.
_KEYS_TABLE = """
CREATE TABLE keys (
    key TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    policy TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX keys_by_expiry ON keys (expires_at) WHERE expires_at IS NOT NULL;
"""

SCHEMA = f"""
CREATE TABLE store_info (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_name TEXT NOT NULL,
    dataset_id TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE store_doc (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    metadata TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    policy TEXT NOT NULL
);
{_KEYS_TABLE}PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

_LIVE = "(expires_at IS NULL OR expires_at > :now)"
_KEY_COLUMNS = "key, value, created_at, updated_at, expires_at, policy"

#: Turns a schema version 1 file into version 2, in one write transaction.
#: Version 1 counted keys with triggers, which wrote one more page per insert
#: and delete (counting the key index is quick enough), and kept the value
#: before the columns every read checks.
MIGRATE_FROM_VERSION_1 = (
    "ALTER TABLE keys RENAME TO keys_version_1",  # its triggers go with it
    "DROP INDEX keys_by_expiry",
    *(part for part in _KEYS_TABLE.split(";") if part.strip()),
    f"INSERT INTO keys ({_KEY_COLUMNS}) SELECT {_KEY_COLUMNS} FROM keys_version_1",
    "DROP TABLE keys_version_1",
    "ALTER TABLE store_info DROP COLUMN key_count",
    "PRAGMA user_version = 2",
)

SELECT_KEY = (
    f"SELECT {_KEY_COLUMNS} FROM keys "
    "WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
)
SELECT_VALUE = (
    "SELECT value FROM keys WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
)
# In a store without a TTL key (most stores) the first test holds, once per
# statement, and SQLite never reads the row: the key index answers alone.
HAS_KEY = (
    "SELECT 1 FROM keys WHERE key = ?1 AND ("
    "NOT EXISTS (SELECT 1 FROM keys WHERE expires_at IS NOT NULL) "
    "OR expires_at IS NULL OR expires_at > ?2)"
)
SELECT_EXPIRED_KEYS = (
    "SELECT key FROM keys WHERE expires_at IS NOT NULL AND expires_at <= :now"
)
SELECT_ALL_KEYS = "SELECT key FROM keys ORDER BY key"
SELECT_ITEMS = f"SELECT key, value FROM keys WHERE {_LIVE} ORDER BY key"
SELECT_ITEMS_IN_RANGE = (
    f"SELECT key, value FROM keys WHERE key >= :low AND key < :high AND {_LIVE} "
    "ORDER BY key"
)
SELECT_ITEMS_FROM = (
    f"SELECT key, value FROM keys WHERE key >= :low AND {_LIVE} ORDER BY key"
)
# count(*) reads the key index, the smallest b-tree; the expired keys are
# found through the expiry index.
COUNT_LIVE_KEYS = (
    "SELECT (SELECT count(*) FROM keys) - (SELECT count(*) FROM keys "
    "WHERE expires_at IS NOT NULL AND expires_at <= ?1)"
)
STORE_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM store_doc) OR "
    "EXISTS (SELECT 1 FROM keys WHERE expires_at IS NULL OR expires_at > ?1)"
)
SELECT_STORE_INFO = "SELECT store_name, dataset_id FROM store_info"
SELECT_STORE_DOC = "SELECT metadata, created_at, updated_at, policy FROM store_doc"
SELECT_OLDEST_LIVE = f"SELECT min(created_at) FROM keys WHERE {_LIVE}"
# Every write of a key sets these from the new row; only created_at differs.
_SET_FROM_NEW_ROW = """
    value = excluded.value,
    updated_at = excluded.updated_at,
    expires_at = excluded.expires_at,
    policy = excluded.policy,"""
# created_at survives an overwrite of a live key; an expired one is inserted anew.
_KEEP_LIVE_CREATED_AT = """    created_at = CASE
        WHEN keys.expires_at IS NULL OR keys.expires_at > excluded.updated_at
        THEN keys.created_at ELSE excluded.created_at END
"""


def _write_key_now(expires_at: str, policy: str) -> str:
    """Return an upsert of one key (?1) and its value text (?2) at the time now.

    That is the call's time (?3) or, if the clock has moved on since (a wait
    for the lock), NOW. The subquery reads it once for the three times;
    "WHERE true" is how SQLite's grammar lets ON CONFLICT follow a SELECT.
    ``expires_at`` and ``policy`` are SQL expressions.
    """
    return f"""
INSERT INTO keys ({_KEY_COLUMNS})
SELECT ?1, ?2, now, now, {expires_at}, {policy}
FROM (SELECT max({NOW}, ?3) AS now) WHERE true
ON CONFLICT (key) DO UPDATE SET{_SET_FROM_NEW_ROW}
"""


_RETURNING_TIMES = "RETURNING created_at, updated_at, expires_at"
# Parameters: key, value text, the call's time, TTL in microseconds or NULL,
# and policy.
SET_KEY = _write_key_now("now + ?4", "?5") + _KEEP_LIVE_CREATED_AT + _RETURNING_TIMES
INSERT_KEY_IF_ABSENT = (
    _write_key_now("now + ?4", "?5")
    + "    created_at = excluded.created_at\n"
    + "WHERE keys.expires_at IS NOT NULL AND keys.expires_at <= excluded.updated_at\n"
    + _RETURNING_TIMES
)
#: ExecutionStore.set's statements by (policy, has a TTL), with the policy and a
#: missing TTL written into the text: every parameter bound costs a write a few
#: tenths of a microsecond. Parameters: key, value text, the call's time, and
#: the TTL in microseconds if it has one.
PUT_KEY = {
    (policy, has_ttl): _write_key_now("now + ?4" if has_ttl else "NULL", f"'{policy}'")
    + _KEEP_LIVE_CREATED_AT
    for policy in ("persist", "evict")
    for has_ttl in (False, True)
}
# The same at a time given (?3) with an expiry (?4) and policy (?5), for writes
# inside a transaction that has read the clock already.
UPSERT_KEY_AT = f"""
INSERT INTO keys ({_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?3, ?4, ?5)
ON CONFLICT (key) DO UPDATE SET{_SET_FROM_NEW_ROW}
{_KEEP_LIVE_CREATED_AT}"""
UPDATE_EXPIRY = f"""
UPDATE keys SET expires_at = :expires_at WHERE key = :key AND {_LIVE}
RETURNING {_KEY_COLUMNS}
"""
UPDATE_POLICY = f"""
UPDATE keys SET policy = :policy WHERE key = :key AND {_LIVE}
RETURNING {_KEY_COLUMNS}
"""
SELECT_LIVE_RECORDS = f"SELECT {_KEY_COLUMNS} FROM keys WHERE {_LIVE} ORDER BY key"
_LOAD_KEY = f"""
INSERT INTO keys ({_KEY_COLUMNS})
VALUES (:key, :value, :created_at, :updated_at, :expires_at, :policy)
ON CONFLICT (key) DO UPDATE SET{_SET_FROM_NEW_ROW}
    created_at = excluded.created_at
"""
LOAD_KEY_REPLACING = _LOAD_KEY + "RETURNING 1"
LOAD_KEY_IF_ABSENT = (
    _LOAD_KEY
    + "WHERE keys.expires_at IS NOT NULL AND keys.expires_at <= :now RETURNING 1"
)
_LOAD_STORE_DOC = """
INSERT INTO store_doc (id, metadata, created_at, updated_at, policy)
VALUES (1, :metadata, :created_at, :updated_at, :policy)
"""
LOAD_STORE_DOC_REPLACING = (
    _LOAD_STORE_DOC
    + """
ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata,
    created_at = excluded.created_at, updated_at = excluded.updated_at,
    policy = excluded.policy
"""
)
LOAD_STORE_DOC_IF_ABSENT = _LOAD_STORE_DOC + "ON CONFLICT (id) DO NOTHING"
# An expired key is left for a purge or sweep: it reads as absent already.
# Live or not is judged at the time of the delete (NOW, once the write lock is
# held), or the call's time (?2) if that is later.
DELETE_LIVE_KEY = (
    "DELETE FROM keys WHERE key = ?1 AND (expires_at IS NULL OR "
    f"expires_at > max({NOW}, ?2))"
)
DELETE_EXPIRED = "DELETE FROM keys WHERE expires_at IS NOT NULL AND expires_at <= :now"
# A purge first asks whether there is anything to purge: a DELETE takes the
# write lock (and may wait for it) even when it deletes nothing.
ANY_EXPIRED = (
    "SELECT 1 FROM keys WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1"
)
PURGE_EXPIRED = f"""
DELETE FROM keys WHERE rowid IN (
    SELECT rowid FROM keys WHERE expires_at IS NOT NULL AND expires_at <= ?1
    LIMIT {_PURGE_BATCH})
"""
DELETE_ALL_KEYS = "DELETE FROM keys"
DELETE_STORE_DOC = "DELETE FROM store_doc"
DELETE_CACHE_KEYS = "DELETE FROM keys WHERE policy = 'evict' OR expires_at IS NOT NULL"
DELETE_EVICT_STORE_DOC = "DELETE FROM store_doc WHERE policy = 'evict'"
INSERT_STORE_DOC = """
INSERT INTO store_doc (id, metadata, created_at, updated_at, policy)
VALUES (1, :metadata, :now, NULL, :policy)
"""
INSERT_STORE_INFO = """
INSERT INTO store_info (id, store_name, dataset_id, created_at)
VALUES (1, :store_name, :dataset_id, :now)
"""
