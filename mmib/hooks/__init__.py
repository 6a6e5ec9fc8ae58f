from .infobatch_hook import CHECKPOINT_KEY, InfoBatchHook
from .iterator import ResumedDataloaderIterator

__all__ = ['InfoBatchHook', 'CHECKPOINT_KEY', 'ResumedDataloaderIterator']
