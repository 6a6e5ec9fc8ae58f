from .infobatch_segmentor import (INDEX_KEY, WEIGHT_KEY, InfoBatchCascadeEncoderDecoder,
                                  InfoBatchEncoderDecoder, InfoBatchSegmentorMixin)
from .per_image_loss import LossContext, UnsupportedLossError, build_loss_hooks

__all__ = ['InfoBatchEncoderDecoder', 'InfoBatchCascadeEncoderDecoder',
           'InfoBatchSegmentorMixin', 'INDEX_KEY', 'WEIGHT_KEY', 'LossContext',
           'UnsupportedLossError', 'build_loss_hooks']
