"""mmib: InfoBatch data pruning for iteration-based mmsegmentation training.

Importing mmib registers into mmseg's registries:

* ``DATA_SAMPLERS``: ``InfiniteInfoBatchSampler``
* ``MODELS``: ``InfoBatchEncoderDecoder``, ``InfoBatchCascadeEncoderDecoder``
* ``HOOKS``: ``InfoBatchHook``
"""
from .hooks import InfoBatchHook
from .samplers import InfiniteInfoBatchSampler
from .segmentors import InfoBatchCascadeEncoderDecoder, InfoBatchEncoderDecoder

__version__ = '0.1.0'

__all__ = ['InfiniteInfoBatchSampler', 'InfoBatchEncoderDecoder',
           'InfoBatchCascadeEncoderDecoder', 'InfoBatchHook', '__version__']
