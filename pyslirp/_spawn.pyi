# Type stub for the cffi module built from csrc/build_spawn.py.
from typing import Any

ffi: Any
lib: Any
