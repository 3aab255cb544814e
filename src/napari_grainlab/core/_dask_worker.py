"""What every worker of our own :class:`distributed.LocalCluster` does when it starts (imported only on
the Dask path, so that ``core.batch`` keeps working without importing ``distributed``).

A worker plugin, not a ``client.run``: the nanny restarts a worker that died, and a plugin is set up
again on the new one.
"""
from __future__ import annotations

import logging
import signal
import threading

from distributed.diagnostics.plugin import WorkerPlugin


class QuietWorker(WorkerPlugin):
    """Quiet logs and no Ctrl-C in our own workers.

    - A Ctrl-C in a terminal reaches every process of the group; the workers leave it to the client,
      which stops the batch and closes the cluster.
    - ``distributed`` logs in the worker go down to CRITICAL. What a user must see reaches the client
      through the futures (a task's error, a worker that died); what is left are shutdown races, e.g.
      a heartbeat that meets the scheduler's closed stream and prints a 40-line traceback at ERROR after
      the batch already reported its one-line error.
    """

    name = "napari-grainlab-quiet-worker"
    idempotent = True

    def setup(self, worker) -> None:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
