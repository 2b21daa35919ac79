"""Interval calendars in the utility's local time: see :mod:`kernels.timegrid`.

The calendar is the bill kernel's input layout, so it lives with the kernels (which depend on nothing in
``grid``); the grid reads it under this name.
"""
from kernels.timegrid import *  # noqa: F401,F403
from kernels.timegrid import __all__  # noqa: F401
