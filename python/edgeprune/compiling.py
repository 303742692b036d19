"""The compiled training step (TrainConfig.compile): when it is used, and how it is compiled.

Two graphs per run: the step's objective (the sampled gates, the gated forward and the loss with
its Lagrangian; fullgraph=True, so a graph break is an error, not a silent slowdown), whose
backward AOT autograd derives, and the update (clipping, the finite guard, AdamW). Traced, the
forward uses the functional delta stack (models/delta_stack.BlockStack) and the hard-concrete
noise in torch arithmetic with its counter offset a device tensor, so one graph serves every
step. Shapes are static (dynamic=False): a run pads every example once to one length and fills an
epoch's smaller last batch (step.CompiledStep). On CUDA the graphs are replayed as CUDA graphs,
which removes the host's per-kernel cost.
"""
from __future__ import annotations

import types

import torch

from .errors import UserError

AUTO_MIN_STEPS = 500   # compile="auto" compiles CUDA runs at least this long (compiling takes a minute or more)


def unsupported(runner_checkpointed: bool, distributed: bool) -> str:
    """Why this run's step cannot be compiled ('' when it can)."""
    if distributed:
        return "runs under FSDP (torchrun), whose hooks the compiled step does not trace yet"
    if runner_checkpointed:
        return "recomputes its decoder layers in backward (checkpointing=True), which the compiled step does not trace"
    return ""


def use_compile(setting: str, device: torch.device, steps: int, *, checkpointing: bool, distributed: bool) -> bool:
    """Whether a run compiles its step: "on", "off", or "auto" (CUDA runs of AUTO_MIN_STEPS or more).

    On the CPU "auto" stays eager: compiling GPT-2 small's step takes minutes on a few cores.
    """
    if setting == "off":
        return False
    why = unsupported(checkpointing, distributed)
    if setting == "on":
        if why:
            raise UserError(f"compile='on' is not possible here: this run {why}; use compile='off' (or 'auto')")
        return True
    return not why and device.type == "cuda" and steps >= AUTO_MIN_STEPS


def compiled(fn, cuda_graphs: bool):
    """fn compiled as one static-shape graph, replayed as CUDA graphs when cuda_graphs (a CUDA run
    with TrainConfig.cuda_graphs). Inductor's size asserts are off: a few hundred Python checks per
    step that the guards already make."""
    return torch.compile(_own_code(fn), fullgraph=True, dynamic=False,
                         options={"size_asserts": False, "triton.cudagraphs": cuda_graphs})


def _own_code(fn):
    """fn (a function or bound method) running a copy of its code. Dynamo keeps compiled graphs per
    code object, up to a recompile limit (8): a process that trains many circuits (a sweep, a
    comparison) would pile every run's graphs onto one method's code and then fail. With its own
    copy, each run keeps its graphs, and they go when the run does."""
    func = getattr(fn, "__func__", fn)
    copy = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__, func.__defaults__,
                              func.__closure__)
    copy.__kwdefaults__ = func.__kwdefaults__
    return types.MethodType(copy, fn.__self__) if hasattr(fn, "__self__") else copy


def adamw_step(optimizer: torch.optim.AdamW) -> None:
    """torch.optim.AdamW's update on its own state and settings, written out so that it traces as
    one graph with tensor learning rates.

    torch's AdamW breaks the graph around its step, and when compiled takes its capturable path,
    which divides by the learning rate: the warm-up's first step (lr 0) turns every gate NaN
    (pytorch/pytorch#126514; a fix was proposed in pytorch/pytorch#186444). Here lr multiplies, so
    lr 0 leaves the parameters as they are and still moves the moments. This can go once the oldest
    torch this project supports (edgeprune._versions) has that fix: CompiledStep would then call
    optimizer.step() and test_compile's comparison with torch's AdamW would hold unchanged.
    Only the settings edgeprune's optimiser uses are written out; any other is refused.
    """
    for group in optimizer.param_groups:
        unwritten = [k for k in ("amsgrad", "differentiable", "fused") if group.get(k)]
        if unwritten:
            raise UserError(f"the compiled step's AdamW does not implement {', '.join(unwritten)}; "
                            "use compile='off' for such an optimiser")
    with torch.no_grad():
        for group in optimizer.param_groups:
            lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad
                state = optimizer.state[p]
                state["step"] += 1
                step = state["step"].double()  # 1 - 0.999 ** step loses 4e-5 of itself in float32
                p.mul_(1 - lr * decay)
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias1, bias2 = 1 - beta1 ** step, 1 - beta2 ** step
                denom = state["exp_avg_sq"].sqrt() / bias2.sqrt().float() + eps
                p.sub_((lr / bias1).float() * state["exp_avg"] / denom.to(p.dtype))
