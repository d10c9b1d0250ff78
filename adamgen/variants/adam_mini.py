"""Adam-mini (Zhang et al., 2024, arXiv:2406.16793): Adam with one second moment per block of parameters instead of
one per element, as the authors' Adam_mini (``adam-mini``).

Each tensor's second moment ``vmean`` is a scalar state: the running mean of ``grad**2`` over the tensor. Steps over
blocks take the blocks as tensors: ``step_many`` over views of the blocks (NumPy), or a param group's ``blocks``
(adamgen.torch: that many equal contiguous slices of each tensor, ``vmean`` then one value per slice);
``adamgen.torch.AdamMini`` chooses them by parameter name as the reference does (one per attention head for queries and
keys, one per output neuron for embeddings, values, projections and MLPs, one per element for biases, one per tensor
otherwise)."""

from adamgen.spec import Spec, grad, param, sqrt, step

spec = Spec("adam_mini", reference="adam_mini.Adam_mini",
            doc="Adam-mini (Zhang et al., 2024): Adam with one second moment per block (per tensor here; blocks are "
                "tensors or param groups' slices).")
lr, beta1, beta2, eps, weight_decay = spec.hyperparameters(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
(exp_avg,) = spec.states("exp_avg")
vmean = spec.scalar_state("vmean", 0.0)
v = spec.update(vmean, beta2 * vmean + (1 - beta2) * spec.mean("grad_square_mean", grad**2))
m = spec.update(exp_avg, exp_avg + (1 - beta1) * (grad - exp_avg))
spec.update(param, param * (1 - lr * weight_decay)
            - lr * (m / (1 - beta1**step)) / (sqrt(v) / sqrt(1 - beta2**step) + eps))
