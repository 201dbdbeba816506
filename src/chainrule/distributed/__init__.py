"""Data-parallel training on MPI (mpi4py): process groups, collectives on tensors and
:class:`DistributedDataParallel`, with PyTorch's names. docs/distributed.md explains how to
launch, what is reduced when, and what communication costs."""

from .comm import ReduceOp as ReduceOp
from .comm import Work as Work
from .comm import abort as abort
from .comm import abort_on as abort_on
from .comm import all_gather as all_gather
from .comm import all_gather_object as all_gather_object
from .comm import all_reduce as all_reduce
from .comm import barrier as barrier
from .comm import broadcast as broadcast
from .comm import broadcast_object_list as broadcast_object_list
from .comm import destroy_process_group as destroy_process_group
from .comm import get_rank as get_rank
from .comm import get_world_size as get_world_size
from .comm import init as init
from .comm import init_process_group as init_process_group
from .comm import is_available as is_available
from .comm import is_initialized as is_initialized
from .comm import is_main_process as is_main_process
from .comm import launched_size as launched_size
from .ddp import CollectiveError as CollectiveError
from .ddp import DistributedDataParallel as DistributedDataParallel
from .ddp import check_same_parameters as check_same_parameters
