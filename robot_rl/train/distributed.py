"""Data-parallel training over processes: `torchrun --nproc_per_node N -m robot_rl.cli train ...`.

Every rank holds the whole model and takes its share of each global batch; before each optimiser
step the gradients are averaged over the ranks (one all-reduce of one flat vector), so N processes
with batch B/N each follow the curve of one process with batch B. We average by hand rather than
wrap the model in DistributedDataParallel: the diffusion loss is `compute_loss`, not `forward`
(DDP's hooks are armed by forward), and an unwrapped model saves and evaluates as it is. gloo on
CPUs, nccl on GPUs; rank 0 evaluates, writes checkpoints and curves.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from robot_rl.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's part of a global batch of n (n must divide evenly)."""
        if n % self.size:
            raise ConfigError(f"the batch size {n} must be a multiple of the {self.size} processes")
        k = n // self.size
        return slice(self.rank * k, (self.rank + 1) * k)


def init_world(device: str = "cpu") -> World:
    """The process group torchrun describes in the environment (WORLD_SIZE > 1), else one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if str(device).startswith("cuda") else "gloo")
    if str(device).startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return World(dist.get_rank(), dist.get_world_size())


def broadcast_parameters(module: torch.nn.Module, world: World) -> None:
    """Every rank starts from rank 0's weights."""
    if world.size > 1:
        import torch.distributed as dist

        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params, loss: torch.Tensor, world: World) -> float:
    """Average the gradients (and the loss, returned) over the ranks, in place."""
    if world.size == 1:
        return loss.item()
    import torch.distributed as dist

    params = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.detach().reshape(1)])
    dist.all_reduce(flat)
    flat /= world.size
    at = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[at: at + n].view_as(p.grad))
        at += n
    return float(flat[-1])


def close_world(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
