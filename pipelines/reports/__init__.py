"""Reports: rendering a report.json as Markdown (:mod:`.markdown`), on the terminal (:mod:`.terminal`) and as one
HTML page with charts (:mod:`.html`, :mod:`.plots`), with the number formats they share (:mod:`.format`); the diff
of two reports (:mod:`.diff`, rendered by :mod:`.diff_render`) and what ``layerscope fix`` writes
(:mod:`.fix_report`)."""
