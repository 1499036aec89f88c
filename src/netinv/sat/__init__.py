"""Exact inversion of binarised networks through CNF and a SAT solver (Suhail, Chakraborty & Sethi 2024;
encoding after Narodytska et al., AAAI 2018). See docs/sat.md.

>>> from netinv.sat import encode, infer, invert, sample, count, robust, QueryConfig, InputConstraints
"""

from .cardinality import Encoding, auto_encoding, cardinality
from .constraints import InputConstraints
from .encode import BNNFormula, PlainBNN, encode, export, from_model
from .queries import QueryConfig, count, infer, invert, load_bnn, robust
from .results import (
                      ClassCount,
                      ClassOutcome,
                      CountResult,
                      InferResult,
                      InvertResult,
                      RobustResult,
                      SampleResult,
                      Status,
                      write_outputs,
)
from .sampling import sample

__all__ = ["Encoding", "auto_encoding", "cardinality", "InputConstraints", "BNNFormula", "PlainBNN", "encode",
           "export", "from_model", "load_bnn", "QueryConfig", "count", "infer", "invert", "robust", "sample",
           "ClassCount", "ClassOutcome", "CountResult", "InferResult", "InvertResult", "RobustResult", "SampleResult",
           "Status", "write_outputs"]
