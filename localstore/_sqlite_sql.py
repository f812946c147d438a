"""The SQL of the SQLite backend: the schema of a store file and every statement.

Statements are named constants, as the backend's methods use them. Times are
integers, microseconds since the Unix epoch; ``:now`` is the call's time.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C53544F  # "LSTO"

#: Expired rows a write removes on its way, so no single write pays for many.
_PURGE_BATCH = 64

SCHEMA = f"""
CREATE TABLE store_info (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_name TEXT NOT NULL,
    dataset_id TEXT,
    created_at INTEGER NOT NULL,
    key_count INTEGER NOT NULL
);
CREATE TABLE store_doc (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    metadata TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    policy TEXT NOT NULL
);
CREATE TABLE keys (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER,
    policy TEXT NOT NULL
);
CREATE INDEX keys_by_expiry ON keys (expires_at) WHERE expires_at IS NOT NULL;
CREATE TRIGGER keys_added AFTER INSERT ON keys
    BEGIN UPDATE store_info SET key_count = key_count + 1; END;
CREATE TRIGGER keys_removed AFTER DELETE ON keys
    BEGIN UPDATE store_info SET key_count = key_count - 1; END;
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

_LIVE = "(expires_at IS NULL OR expires_at > :now)"
_KEY_COLUMNS = "key, value, created_at, updated_at, expires_at, policy"

SELECT_KEY = f"SELECT {_KEY_COLUMNS} FROM keys WHERE key = :key AND {_LIVE}"
SELECT_VALUE = (
    "SELECT value FROM keys WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
)
HAS_KEY = (
    "SELECT 1 FROM keys WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)"
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
COUNT_LIVE_KEYS = (
    "SELECT key_count - (SELECT count(*) FROM keys "
    "WHERE expires_at IS NOT NULL AND expires_at <= :now) FROM store_info"
)
STORE_EXISTS = (
    "SELECT EXISTS (SELECT 1 FROM store_doc) OR (SELECT key_count FROM store_info) > "
    "(SELECT count(*) FROM keys WHERE expires_at IS NOT NULL AND expires_at <= :now)"
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
_INSERT_KEY = f"""
INSERT INTO keys ({_KEY_COLUMNS})
VALUES (:key, :value, :now, :now, :expires_at, :policy)
ON CONFLICT (key) DO UPDATE SET{_SET_FROM_NEW_ROW}
"""
# created_at survives an overwrite of a live key; an expired one is inserted anew.
UPSERT_KEY_QUIETLY = f"""{_INSERT_KEY}    created_at = CASE
        WHEN keys.expires_at IS NULL OR keys.expires_at > :now THEN keys.created_at
        ELSE excluded.created_at END
"""
UPSERT_KEY = UPSERT_KEY_QUIETLY + "RETURNING created_at"
INSERT_KEY_IF_ABSENT = f"""{_INSERT_KEY}    created_at = excluded.created_at
WHERE keys.expires_at IS NOT NULL AND keys.expires_at <= :now
RETURNING created_at
"""
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
DELETE_KEY = "DELETE FROM keys WHERE key = :key RETURNING expires_at"
DELETE_EXPIRED = "DELETE FROM keys WHERE expires_at IS NOT NULL AND expires_at <= :now"
PURGE_EXPIRED = f"""
DELETE FROM keys WHERE rowid IN (
    SELECT rowid FROM keys WHERE expires_at IS NOT NULL AND expires_at <= :now
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
INSERT INTO store_info (id, store_name, dataset_id, created_at, key_count)
VALUES (1, :store_name, :dataset_id, :now, 0)
"""
