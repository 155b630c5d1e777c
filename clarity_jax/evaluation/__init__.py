"""The `evaluate` command's library: restorations scored against ground truth.

clips.py (what is scored, checked) -> methods.py (bicubic, bundles, workdirs,
cascades) -> scores.py (the numbers of a frame) -> evaluate.py (the run) ->
report.py (metrics.json, results.md) and pictures.py (comparison pictures). The
protocol is docs/evaluation.md.
"""
