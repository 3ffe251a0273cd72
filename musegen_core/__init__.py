"""MuseGen core: music type, formats, models, rendering and feedback — everything except the UI."""
