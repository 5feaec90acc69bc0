"""Group commit for the collector: concurrent uploads share one store transaction.

Each upload is still answered only after the transaction holding its measurements committed (or failed: then
nothing of it was acknowledged), but N waiting uploads cost one transaction instead of N.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pyarrow as pa

from observatory.store.base import Store, values_of


class GroupCommit:
    """Concurrent uploads share store transactions: whoever finds the store free writes every batch waiting.

    Each upload is still answered only after the transaction holding its measurements committed (or failed:
    then nothing of it was acknowledged), but N waiting uploads cost one transaction instead of N. A
    measurement sent in two uploads at once is accepted for the first one queued, a duplicate for the other.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: list[tuple[Store, pa.Table, Future[set[str]]]] = []
        self._busy = False

    def write(self, store: Store, table: pa.Table) -> set[str]:
        """Stores the table; the uids it was the first to store."""
        fut: Future[set[str]] = Future()
        with self._cond:
            self._queue.append((store, table, fut))
            while self._busy and not fut.done():
                self._cond.wait()
            if fut.done():
                return fut.result()
            self._busy = True
            group, self._queue = self._queue, []
        try:
            self._commit(group)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return fut.result()

    @staticmethod
    def _commit(group: list[tuple[Store, pa.Table, Future[set[str]]]]) -> None:
        # one insert per store and table schema (documents arrive encoded once the store has a dictionary)
        parts: list[tuple[Store, pa.Schema, list[tuple[pa.Table, Future[set[str]]]]]] = []
        for st, table, fut in group:
            for s, schema, mine in parts:
                if s is st and schema.equals(table.schema):
                    mine.append((table, fut))
                    break
            else:
                parts.append((st, table.schema, [(table, fut)]))
        for st, _, mine in parts:
            try:
                result = st.insert_table(pa.concat_tables([t for t, _ in mine]) if len(mine) > 1 else mine[0][0])
            except BaseException as exc:
                for _, f in mine:
                    f.set_exception(exc)
                continue
            fresh = set(result.accepted_uids)
            for t, f in mine:
                firsts = set()
                for uid in values_of(t.column("uid")):
                    if uid in fresh:
                        fresh.discard(uid)
                        firsts.add(uid)
                f.set_result(firsts)
