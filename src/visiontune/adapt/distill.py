"""Knowledge distillation: the student matches a frozen teacher's softened class distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton et al.'s KD term: ``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch.

    The T² factor keeps its gradient scale comparable to the cross-entropy term as T changes.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: the teacher must predict the same classes"
        )
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)


def input_adapter(student_pre, teacher_pre):
    """A function mapping a batch normalised for the student to the teacher's input: undo the
    student's mean/std, resize to the teacher's input size, apply the teacher's mean/std.
    Returns None when both expect the same input."""
    s_mean, s_std = getattr(student_pre, "mean", None), getattr(student_pre, "std", None)
    t_mean, t_std = getattr(teacher_pre, "mean", None), getattr(teacher_pre, "std", None)
    t_size = getattr(teacher_pre, "input_size", None)
    s_size = getattr(student_pre, "input_size", None)
    if (s_mean, s_std) == (t_mean, t_std) and (t_size is None or t_size == s_size):
        return None

    def adapt(x: torch.Tensor) -> torch.Tensor:
        if s_mean is not None and s_std is not None:
            x = x * torch.tensor(s_std, device=x.device).view(1, -1, 1, 1) + torch.tensor(s_mean, device=x.device).view(
                1, -1, 1, 1
            )
        if t_size is not None and tuple(x.shape[-2:]) != tuple(t_size):
            x = F.interpolate(x, size=tuple(t_size), mode="bilinear", align_corners=False, antialias=True)
        if t_mean is not None and t_std is not None:
            x = (x - torch.tensor(t_mean, device=x.device).view(1, -1, 1, 1)) / torch.tensor(
                t_std, device=x.device
            ).view(1, -1, 1, 1)
        return x

    return adapt
