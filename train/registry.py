"""The name under which train/ registers its Keras objects (layers, losses, metrics, schedules).

A ``.keras`` checkpoint stores each custom object as ``<PACKAGE>><name>``; loading it needs the
object registered under the same name, so this string never changes.
"""

PACKAGE = "stream_sep_train"
