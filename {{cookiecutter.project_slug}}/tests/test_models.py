"""The U-Net and its layers: shapes, size checks, serialisation and that training moves every weight."""

import io
import pickle

import pytest
import torch
from torch import nn

from layers.conv import ConvBlock, PixelShuffleUpsample, TransposedConvUpsample
from models.unet import UNet


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 1}, (16, 16)),
        ({"in_channels": 3, "out_channels": 2, "base_channels": 8, "depth": 3}, (32, 48)),
        ({"in_channels": 1, "out_channels": 1, "base_channels": 4, "depth": 2, "upsampling": "transposed"}, (8, 24)),
        (
            {
                "in_channels": 2,
                "out_channels": 3,
                "base_channels": 4,
                "depth": 2,
                "dropout": 0.2,
                "activation": nn.GELU,
            },
            (12, 4),
        ),
    ],
)
def test_unet_output_has_input_size(kwargs: dict, size: tuple[int, int]) -> None:
    model = UNet(**kwargs)
    out = model(torch.randn(2, kwargs["in_channels"], *size))
    assert out.shape == (2, kwargs["out_channels"], *size)


@pytest.mark.parametrize("layer", [PixelShuffleUpsample, TransposedConvUpsample])
def test_upsampling_layers_double_the_size_exactly(layer: type) -> None:
    out = layer(6, 3)(torch.randn(1, 6, 5, 7))
    assert out.shape == (1, 3, 10, 14)


def test_conv_block_stride_two_halves_the_size() -> None:
    assert ConvBlock(2, 4, stride=2)(torch.randn(1, 2, 8, 6)).shape == (1, 4, 4, 3)


def test_unet_refuses_sizes_not_divisible_and_names_them() -> None:
    with pytest.raises(ValueError, match=r"input size 30x32 is not divisible by 2\*\*depth = 8"):
        UNet(base_channels=4, depth=3)(torch.randn(1, 1, 30, 32))


@pytest.mark.parametrize("kwargs", [{"base_channels": 0}, {"depth": 0}, {"dropout": 1.0}, {"upsampling": "nearest"}])
def test_unet_refuses_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="UNet: "):
        UNet(**kwargs)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("upsampling", ["pixel_shuffle", "transposed"])
def test_unet_pickles_saves_and_scripts_with_identical_outputs(upsampling: str) -> None:
    torch.manual_seed(0)
    model = UNet(in_channels=1, out_channels=1, base_channels=4, depth=2, upsampling=upsampling, dropout=0.1).eval()
    x = torch.randn(2, 1, 16, 16)
    expected = model(x)

    assert torch.equal(pickle.loads(pickle.dumps(model))(x), expected)

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = UNet(in_channels=1, out_channels=1, base_channels=4, depth=2, upsampling=upsampling, dropout=0.1).eval()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored(x), expected)

    assert torch.allclose(torch.jit.script(model)(x), expected, atol=1e-6)


def test_one_optimisation_step_changes_every_parameter() -> None:
    torch.manual_seed(0)
    model = UNet(in_channels=1, out_channels=1, base_channels=4, depth=2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.binary_cross_entropy_with_logits(
        model(torch.randn(4, 1, 16, 16)), (torch.rand(4, 1, 16, 16) > 0.5).float()
    )
    loss.backward()
    optimizer.step()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged
