"""ramda_optax: regularized adaptive methods for structured neural networks.

Optax gradient transformations implementing RAMDA (Huang & Lee, NeurIPS 2024)
and its building blocks.
"""

from ramda_optax import datasets
from ramda_optax import dual_averaging
from ramda_optax.optimizers import RamdaState
from ramda_optax.optimizers import SubproblemSpec
from ramda_optax.optimizers import inner_iterations
from ramda_optax.optimizers import ramda
from ramda_optax.optimizers import regularized_dual_averaging
from ramda_optax.optimizers import subproblem_solution
from ramda_optax.preconditioners import Preconditioner
from ramda_optax.preconditioners import cube_root
from ramda_optax.regularizers import GroupNorm
from ramda_optax.regularizers import LeafPenalty
from ramda_optax.regularizers import Regularizer
from ramda_optax.regularizers import group_lasso
from ramda_optax.schedules import StagewiseSchedule
from ramda_optax.schedules import stagewise_schedule
from ramda_optax.solvers import PGSolver
from ramda_optax.solvers import pg_solver
from ramda_optax.structure import group_sparsity
from ramda_optax.structure import unstructured_sparsity
from ramda_optax.structure import weighted_group_sparsity

__version__ = "0.1.0"

__all__ = (
    "GroupNorm",
    "LeafPenalty",
    "PGSolver",
    "Preconditioner",
    "RamdaState",
    "Regularizer",
    "StagewiseSchedule",
    "SubproblemSpec",
    "cube_root",
    "datasets",
    "dual_averaging",
    "group_lasso",
    "group_sparsity",
    "inner_iterations",
    "pg_solver",
    "ramda",
    "regularized_dual_averaging",
    "stagewise_schedule",
    "subproblem_solution",
    "unstructured_sparsity",
    "weighted_group_sparsity",
)
