"""The measuring shim the end-to-end benchmark loads in place of each Lambda function (its own folder,
because the local worker puts the folder of the code on sys.path). The shim reads these variables."""

from pathlib import Path

SHIM_DIR = Path(__file__).parent
SHIM_HANDLER = "lambda_wrapper.handler"
REAL_CODE_DIR = "BENCH_REAL_CODE_DIR"
REAL_HANDLER = "BENCH_REAL_HANDLER"
USAGE_DIR = "BENCH_USAGE_DIR"
PROFILE_DIR = "BENCH_PROFILE_DIR"  # when set: cProfile every invocation, stats per process there
