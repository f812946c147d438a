"""A tour of localstore's API, on the default root (or ``$LOCALSTORE_ROOT``).

Run it twice: it removes what it wrote at the start, so each run shows the same.
"""

from __future__ import annotations

import time

from localstore import ExecutionStore, ExecutionStoreService

DATASET = "quickstart-dataset"


def main() -> None:
    """Walk through stores, keys, TTLs, caches, contexts and the global methods."""
    service = ExecutionStoreService()
    scoped = ExecutionStoreService(dataset_id=DATASET)
    service.delete_store_global("quickstart")
    print(f"root: {service.root}")

    # A store with metadata, and keys in it.
    service.create_store("quickstart", metadata={"owner": "examples"})
    store = ExecutionStore("quickstart", service)
    store.set("settings", {"threshold": 0.5, "labels": ("cat", "dog")})
    print("settings:", store.get("settings"))  # the tuple reads back as a list
    print("metadata:", service.get_store("quickstart").metadata)

    # A key with a TTL of half a second disappears from every read on its own.
    store.set("heartbeat", time.time(), ttl=0.5)
    print("keys now:", store.list_keys())
    time.sleep(0.6)
    print("keys after the TTL:", store.list_keys())

    # Cache entries (policy "evict") go away with clear_cache; persistent keys stay.
    store.set_cache("preview", [1, 2, 3])
    store.clear_cache()
    print("after clear_cache:", store.list_keys())

    # Full documents carry timestamps (naive UTC) and the policy.
    doc = service.set_key(
        "quickstart", "run:1", {"id": 1, "result_ids": [7, 8, 9]}, ttl=3600
    )
    print(
        f"run:1 created {doc.created_at:%H:%M:%S} UTC, "
        f"expires {doc.expires_at:%H:%M:%S}, policy {doc.policy.value}"
    )
    print(
        "runs without heavy fields:",
        store.list_values("run:", exclude_fields=["result_ids"]),
    )

    # Atomic helpers for coordination between processes.
    print("took the lock:", store.set_if_absent("lock", "worker-1", ttl=30))
    print("took it again:", store.set_if_absent("lock", "worker-2", ttl=30))
    print("released:", store.compare_and_set("lock", "worker-1", None))

    # The same store name in a dataset's context is a different store.
    scoped.set_key("quickstart", "settings", {"threshold": 0.9})
    print("dataset-scoped settings:", scoped.get_key("quickstart", "settings").value)
    contexts = sorted(
        (d.dataset_id or "(global)", d.store_name)
        for d in service.list_stores_global()
        if d.store_name == "quickstart"
    )
    print("quickstart stores in every context:", contexts)

    removed = service.delete_store_global("quickstart")
    print(f"deleted the store from {removed} contexts")


if __name__ == "__main__":
    main()
