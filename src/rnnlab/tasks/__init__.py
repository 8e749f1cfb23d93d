"""Tasks and their registry. Import a new task module here to register it."""

from rnnlab.tasks.adding import AddingTask as AddingTask
from rnnlab.tasks.associative_recall import AssociativeRecallTask as AssociativeRecallTask
from rnnlab.tasks.base import (
           TASKS,
           Batch,
           Task,
           get_task_class,
           make_task,
           register_task,
           task_schema,
)
from rnnlab.tasks.copy import CopyTask
from rnnlab.tasks.forecast import ForecastTask as ForecastTask
from rnnlab.tasks.selective_copy import SelectiveCopyTask as SelectiveCopyTask
from rnnlab.tasks.temporal_order import TemporalOrderTask as TemporalOrderTask
from rnnlab.tasks.timed_spikes import TimedSpikesTask as TimedSpikesTask

__all__ = ["TASKS", "Batch", "CopyTask", "Task", "get_task_class", "make_task", "register_task",
           "task_schema"]
