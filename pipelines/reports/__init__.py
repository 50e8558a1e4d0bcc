"""Reports: the typed report model (:mod:`.model`, with :mod:`.comparison` and :mod:`.records`), reading and
validating a report file (:mod:`.read`), the DataFrame view (:mod:`.table`), what a run writes into its output
directory (:mod:`.outputs`), rendering as Markdown (:mod:`.markdown`), on the terminal (:mod:`.terminal`) and as
one HTML page with charts (:mod:`.html`, :mod:`.plots`) with the number formats they share (:mod:`.format`); the
diff of two reports (:mod:`.diff`, rendered by :mod:`.diff_render`) and what ``layerscope fix`` writes
(:mod:`.fix_report`)."""

from layerscope.pipelines.reports.comparison import Comparison, LayerResult
from layerscope.pipelines.reports.model import Report
from layerscope.pipelines.reports.read import ReportError, load_report, read_report
from layerscope.pipelines.reports.records import Metrics

__all__ = ["Comparison", "LayerResult", "Metrics", "Report", "ReportError", "load_report", "read_report"]
