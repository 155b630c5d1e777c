"""ClarityNetSR and its parts (eqs. 3-6); see docs/architecture.md."""

from clarity_jax.models.claritynet import ClarityNetSR
from clarity_jax.models.claritynet import VARIANTS
from clarity_jax.models.claritynet import count_params
from clarity_jax.models.cost import measure_cost
from clarity_jax.models.claritynet import create_model
from clarity_jax.models.claritynet import model_from_config
from clarity_jax.models.flow import FlowEstimator
from clarity_jax.models.flow import warp

__all__ = [
    'ClarityNetSR', 'FlowEstimator', 'VARIANTS', 'count_params', 'create_model',
    'measure_cost', 'model_from_config', 'warp',
]
