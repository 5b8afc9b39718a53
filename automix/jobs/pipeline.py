"""The whole jobs, as library calls: master one file, mix one folder of stems.

The CLI is a thin layer over these functions; scripts can call them directly. This
module gathers the public names; the code lives beside it:

* :mod:`automix.jobs.checks` -- every argument and path checked before audio is read;
* :mod:`automix.jobs.safety` -- batches where one bad file never stops the others,
  workers, signals;
* :mod:`automix.jobs.master_files` -- ``master``: one file, or a batch;
* :mod:`automix.jobs.mix_folder` -- ``mix``: a folder of stems into one track;
* :mod:`automix.jobs.report` -- the mix's JSON report.
"""

from automix.jobs.checks import StemScan, check_mix_arguments, scan_stems_folder
from automix.jobs.master_files import (
    MasterPlan,
    master_file,
    master_job,
    output_path_for,
    plan_master,
    run_master_batch,
)
from automix.jobs.mix_folder import (
    NEAR_SILENT_LU,
    LoadedStems,
    MixResult,
    identify_stems,
    load_stems,
    mix_folder,
)
from automix.jobs.options import MIN_MEASURABLE_S, OutputOptions
from automix.jobs.report import build_report, write_report

__all__ = [
    "MIN_MEASURABLE_S", "NEAR_SILENT_LU", "LoadedStems", "MasterPlan", "MixResult", "OutputOptions", "StemScan",
    "build_report", "check_mix_arguments", "identify_stems", "load_stems", "master_file", "master_job",
    "mix_folder", "output_path_for", "plan_master", "run_master_batch", "scan_stems_folder", "write_report",
]  # fmt: skip
