"""AdamW (Loshchilov & Hutter, 2017, arXiv:1711.05101): Adam with decoupled weight decay, as torch.optim.AdamW."""

import dataclasses

from adamgen.spec import validate
from adamgen.transforms import decoupled_weight_decay, with_defaults
from adamgen.variants import adam

spec = dataclasses.replace(
    with_defaults(decoupled_weight_decay(validate(adam.spec), name="adamw"), weight_decay=1e-2),
    reference="torch.optim.AdamW",
    doc="AdamW (Loshchilov & Hutter, 2017): Adam with decoupled weight decay.",
)
