"""The fronts: the command line, the papermill pipeline, the notebooks' helpers and the widgets.
They collect input and show events; the engine does every step."""
