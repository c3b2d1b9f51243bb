"""ramda_optax: regularized adaptive methods for structured neural networks.

Optax gradient transformations implementing RAMDA (Huang & Lee, NeurIPS 2024)
and its building blocks, one module per stage of a step:

    statistics, accumulator  →  subproblem  →  solvers  →  the optimizers
    (P, v; the dual average)     (a, v, P, τ)   (θ̂)         (dual_averaging,
                                                             proximal)

run leaf by leaf, or in cache-sized blocks of whole groups (``fused``,
``blocks``; the solve as one Pallas program per block: ``group_kernels``;
RAMDA's whole step as a compiled CPU kernel: ``cpu_kernel``; the kernels
on each device's shard under SPMD: ``partitioning``), with the
regularizers ψ (``regularizers``, aligned with params by ``layouts``), the
schedule (``schedules``) and state inspection (``inspection``). Flax
tooling (``groups``, ``compaction``), metrics (``structure``,
``identification``), data, debugging and sharding build on them; the
algorithm itself does not import Flax.
"""

from ramda_optax import accumulator
from ramda_optax import blocks
from ramda_optax import compaction
from ramda_optax import cpu_kernel
from ramda_optax import datasets
from ramda_optax import debugging
from ramda_optax import dual_averaging
from ramda_optax import fused
from ramda_optax import group_kernels
from ramda_optax import groups
from ramda_optax import identification
from ramda_optax import inspection
from ramda_optax import layouts
from ramda_optax import partitioning
from ramda_optax import proximal
from ramda_optax import regularizers
from ramda_optax import schedules
from ramda_optax import sharding
from ramda_optax import solvers
from ramda_optax import statistics
from ramda_optax import structure
from ramda_optax import subproblem
from ramda_optax.compaction import compact
from ramda_optax.compaction import CompactionResult
from ramda_optax.compaction import model_cost
from ramda_optax.compaction import ModelCost
from ramda_optax.debugging import check_finite
from ramda_optax.debugging import nonfinite_leaves
from ramda_optax.debugging import report_nonfinite
from ramda_optax.dual_averaging import ramda
from ramda_optax.dual_averaging import RamdaState
from ramda_optax.dual_averaging import regularized_dual_averaging
from ramda_optax.dual_averaging import rmda
from ramda_optax.identification import PatternHistory
from ramda_optax.identification import zero_groups
from ramda_optax.inspection import inner_iterations
from ramda_optax.inspection import subproblem_solution
from ramda_optax.inspection import subproblem_zero_groups
from ramda_optax.layouts import leaf_groups
from ramda_optax.proximal import prox_sgd
from ramda_optax.proximal import prox_ssi
from ramda_optax.proximal import proxgen
from ramda_optax.proximal import ProximalState
from ramda_optax.proximal import regularized_proximal
from ramda_optax.regularizers import group_lasso
from ramda_optax.regularizers import GroupNorm
from ramda_optax.regularizers import l1
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.regularizers import nuclear_norm
from ramda_optax.regularizers import NuclearNorm
from ramda_optax.regularizers import Regularizer
from ramda_optax.schedules import stagewise_schedule
from ramda_optax.solvers import default_solver
from ramda_optax.solvers import exact_solver
from ramda_optax.solvers import ExactSolver
from ramda_optax.solvers import pg_solver
from ramda_optax.solvers import PGSolver
from ramda_optax.solvers import prox_solver
from ramda_optax.solvers import ProxSolver
from ramda_optax.statistics import adam_moments
from ramda_optax.statistics import adamw_step_moments
from ramda_optax.statistics import cube_root
from ramda_optax.statistics import ema_momentum
from ramda_optax.statistics import Moments
from ramda_optax.statistics import Preconditioner
from ramda_optax.statistics import sqrt_count
from ramda_optax.statistics import Statistics
from ramda_optax.statistics import Step
from ramda_optax.structure import group_sparsity
from ramda_optax.structure import LayerStructure
from ramda_optax.structure import low_rank_level
from ramda_optax.structure import structure_report
from ramda_optax.structure import StructureReport
from ramda_optax.structure import unstructured_sparsity
from ramda_optax.structure import weighted_group_sparsity
from ramda_optax.subproblem import Subproblem

__version__ = "0.1.0"

__all__ = (
    "CompactionResult",
    "ExactSolver",
    "GroupNorm",
    "LayerStructure",
    "LeafPenalty",
    "ModelCost",
    "Moments",
    "NuclearNorm",
    "PGSolver",
    "PatternHistory",
    "Preconditioner",
    "ProxSolver",
    "ProximalState",
    "RamdaState",
    "Regularizer",
    "Statistics",
    "Step",
    "StructureReport",
    "Subproblem",
    "accumulator",
    "adam_moments",
    "adamw_step_moments",
    "blocks",
    "check_finite",
    "compact",
    "compaction",
    "cpu_kernel",
    "cube_root",
    "datasets",
    "debugging",
    "default_solver",
    "dual_averaging",
    "fused",
    "group_kernels",
    "ema_momentum",
    "exact_solver",
    "group_lasso",
    "group_sparsity",
    "groups",
    "identification",
    "inner_iterations",
    "inspection",
    "l1",
    "layouts",
    "leaf_groups",
    "low_rank_level",
    "model_cost",
    "nonfinite_leaves",
    "nuclear_norm",
    "partitioning",
    "pg_solver",
    "prox_sgd",
    "prox_solver",
    "prox_ssi",
    "proxgen",
    "proximal",
    "ramda",
    "regularized_dual_averaging",
    "regularized_proximal",
    "regularizers",
    "report_nonfinite",
    "rmda",
    "schedules",
    "sharding",
    "solvers",
    "sqrt_count",
    "stagewise_schedule",
    "statistics",
    "structure",
    "structure_report",
    "subproblem",
    "subproblem_solution",
    "subproblem_zero_groups",
    "unstructured_sparsity",
    "weighted_group_sparsity",
    "zero_groups",
)
