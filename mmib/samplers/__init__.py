from .infobatch_sampler import InfiniteInfoBatchSampler, SampledBatch

__all__ = ['InfiniteInfoBatchSampler', 'SampledBatch']
