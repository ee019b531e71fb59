"""Weight averaging: the mean of states, loadable into the model, float state only averaged."""

from __future__ import annotations

import pytest
import torch

from avemo_core.averaging import WeightAverage
from avemo_core.model import CrossModalTransformer, ModelConfig


def test_average_of_states_is_their_mean_and_loads() -> None:
    torch.manual_seed(0)
    model = CrossModalTransformer(ModelConfig.named("tiny"))
    average = WeightAverage()
    with pytest.raises(ValueError, match="update"):
        average.state_dict()
    states = []
    for step in range(3):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(float(step + 1))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        average.update(model)
    assert average.count == 3
    averaged = average.state_dict()
    for name, value in averaged.items():
        expected = torch.stack([s[name].double() for s in states]).mean(dim=0)
        torch.testing.assert_close(value, expected)
    average.apply_to(model)
    for name, value in model.state_dict().items():
        assert value.dtype == states[0][name].dtype
        torch.testing.assert_close(value, averaged[name].to(value.dtype))
    # The middle state is the mean of +1, +3, +6 offsets (3.33...): not the latest.
    first = next(iter(model.parameters()))
    assert not torch.allclose(first, states[-1][next(iter(dict(model.named_parameters())))])
