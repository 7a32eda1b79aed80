"""The whole job in one run, stage by stage, for ``scripts/full_run.sh``: the stage runners and their reports.

Stages (``scripts/full_run.sh OUT --scale full|small|tiny``): 1 the replica with small JPEGs (``inat-fl
sample --image-side``), 2 ``inat-fl check``, 3 ``inat-fl prepare`` on a real Dask cluster killed part-way
and resumed (:mod:`~inat_hf.fullrun.cluster`), 4 ``datasets.load_dataset``, ``ClientData`` and
``read_client`` on the output (:func:`~inat_hf.fullrun.stages.load_stage`), 5 a FedAvg round and a Flower
round with a tiny ViT. Each stage writes a JSON report when it succeeds (:mod:`~inat_hf.fullrun.reports`:
seconds, the peak RSS of every process it started, rows, bytes, checks), so a rerun skips it; the command
line is ``python -m inat_hf.fullrun {run,prepare,load,summary}``. Processes are watched and stopped by
:mod:`~inat_hf.fullrun.monitor`, only those this run started, each by its pid.
"""
