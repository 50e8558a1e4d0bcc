"""Reports: the typed report model (:mod:`.model`, with :mod:`.comparison` and :mod:`.records`), reading and
validating a report file (:mod:`.read`), the DataFrame view (:mod:`.table`), what a run writes into its output
directory (:mod:`.outputs`), rendering as Markdown (:mod:`.markdown`), on the terminal (:mod:`.terminal`) and as
one HTML page with charts (:mod:`.html`, :mod:`.plots`) with the number formats they share (:mod:`.format`); the
diff of two reports (:mod:`.diff`, rendered by :mod:`.diff_render`) and what ``layerscope fix`` writes
(:mod:`.fix_report`).

Nothing is re-exported here: a cached rerun writes a run directory through :mod:`.outputs` and should not pay
for defining the report's dataclasses; the typed report is ``layerscope.Report``."""
