"""Lion (Chen et al., 2023, arXiv:2302.06675): sign of an interpolated momentum."""

from adamgen.spec import Spec, grad, param, sign

spec = Spec(
    "lion",
    reference="optimi.Lion, timm.optim.Lion (google/automl lion); Chen et al. 2023, arXiv:2302.06675",
    doc="Lion (Chen et al., 2023): param -= lr * sign(beta1*m + (1-beta1)*grad), then m = beta2*m + (1-beta2)*grad. "
        "Decoupled weight decay param *= 1 - lr*weight_decay before the step, as the paper and timm/optimi "
        "(decouple_lr=False). sign(0) = 0, as torch.sign.",
)
lr, beta1, beta2, weight_decay = spec.hyperparameters(lr=1e-4, beta1=0.9, beta2=0.99, weight_decay=0.0)
exp_avg = spec.state("exp_avg")
update = sign(beta1 * exp_avg + (1 - beta1) * grad)
spec.update(exp_avg, beta2 * exp_avg + (1 - beta2) * grad)
spec.update(param, param * (1 - lr * weight_decay) - lr * update)
