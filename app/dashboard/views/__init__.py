"""One :class:`panel.viewable.Viewer` per dashboard tab, driven by the shared selection."""
