"""Framework-free InfoBatch policy and stream (depends on torch only)."""
from .policy import VirtualEpochPlan, index_dtype_for, plan_virtual_epoch
from .stream import PrunedStream, anneal_start_iter

__all__ = ['VirtualEpochPlan', 'plan_virtual_epoch', 'index_dtype_for',
           'PrunedStream', 'anneal_start_iter']
