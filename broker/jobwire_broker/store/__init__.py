"""The store layer: Redis keys, Lua scripts and a typed async API over them. It keeps
the domain's model (domain/model.py) in the fields store/schema.py declares; the codes
its scripts return stay inside it (store.py turns them into model.Outcome)."""

from .store import DeadlineRefused, FlowEntry, Store, StoreUnavailable, UnknownDependency

__all__ = ["DeadlineRefused", "FlowEntry", "Store", "StoreUnavailable", "UnknownDependency"]
