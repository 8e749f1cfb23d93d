"""Tasks and their registry. Import a new task module here to register it."""

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

__all__ = ["TASKS", "Batch", "CopyTask", "Task", "get_task_class", "make_task", "register_task",
           "task_schema"]
