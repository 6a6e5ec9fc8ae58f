"""Train-loop data iterator that restarts the sampler without replaying data."""
from torch.utils.data import DataLoader

__all__ = ['ResumedDataloaderIterator']


class ResumedDataloaderIterator:
    """Stands in for mmengine's infinite DataLoader iterator of a train loop.

    mmengine 0.10.7's ``IterBasedTrainLoop.run`` advances the DataLoader
    iterator ``iter`` times after a resume, loading and discarding that many
    real batches. InfoBatch's sampler restores its position from the
    checkpoint instead, so the first ``num_replayed`` calls to ``next`` return
    None without touching the DataLoader. Later calls read a DataLoader
    iterator created when this object is, which starts the sampler at its
    restored position.

    Args:
        dataloader (DataLoader): The train DataLoader.
        num_replayed (int): Number of replay calls that return None.
    """

    def __init__(self, dataloader: DataLoader, num_replayed: int) -> None:
        self._dataloader = dataloader
        self._iterator = iter(dataloader)
        self.num_replayed = num_replayed

    def __iter__(self):
        return self

    def __next__(self):
        if self.num_replayed > 0:
            self.num_replayed -= 1
            return None
        try:
            return next(self._iterator)
        except StopIteration:
            # An infinite sampler never ends; a DataLoader can still stop if
            # its sampler was replaced. Start it again, as mmengine does.
            self._iterator = iter(self._dataloader)
            return next(self._iterator)
