"""CheckpointReader: names, metadata, slices along any dim, and the accounting of what was read."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from helix_core.checkpoint import INDEX_FILE, CheckpointReader


def _tensors(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "embed.weight": torch.randn(32, 8, generator=generator),
        "layer.0.proj.weight": torch.randn(12, 16, generator=generator).to(torch.bfloat16),
        "layer.0.norm.weight": torch.randn(16, generator=generator),
        "layer.1.mlp.experts.gate_up_proj": torch.randn(4, 12, 8, generator=generator),  # [E, 2I, H]
        "layer.1.mlp.experts.down_proj": torch.randn(4, 8, 6, generator=generator).half(),  # [E, H, I]
    }


@pytest.fixture
def single_file(tmp_path):
    save_file(_tensors(), tmp_path / "model.safetensors")
    return tmp_path


@pytest.fixture
def sharded(tmp_path):
    """Three shards and the index HF writes; a stray non-indexed file must be ignored."""
    tensors = _tensors()
    names = sorted(tensors)
    groups = [names[:2], names[2:3], names[3:]]
    weight_map = {}
    for i, group in enumerate(groups):
        file = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({name: tensors[name] for name in group}, tmp_path / file)
        weight_map.update({name: file for name in group})
    (tmp_path / INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    save_file({"stray": torch.zeros(1)}, tmp_path / "consolidated.safetensors")
    return tmp_path


@pytest.fixture
def several_files(tmp_path):
    tensors = _tensors()
    names = sorted(tensors)
    save_file({name: tensors[name] for name in names[:3]}, tmp_path / "a.safetensors")
    save_file({name: tensors[name] for name in names[3:]}, tmp_path / "b.safetensors")
    return tmp_path


def _full(model_dir):
    full = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        full.update(load_file(path))
    return full


@pytest.mark.parametrize("layout", ["single_file", "sharded", "several_files"])
def test_names_metadata_and_whole_reads(layout, request):
    model_dir = request.getfixturevalue(layout)
    reader = CheckpointReader(model_dir)
    expected = _tensors()
    assert reader.names() == sorted(expected)
    assert reader.has("embed.weight") and not reader.has("stray") and not reader.has("nope")
    for name, tensor in expected.items():
        assert reader.shape(name) == tuple(tensor.shape)
        assert reader.dtype(name) == tensor.dtype
        assert torch.equal(reader.read(name), tensor)
    assert reader.bytes_read == sum(t.nbytes for t in expected.values())
    assert reader.reads == [(name, 0, None) for name in expected]


@pytest.mark.parametrize("layout", ["single_file", "sharded"])
@pytest.mark.parametrize(
    "name, dim, ranges",
    [
        ("embed.weight", 0, [(8, 16)]),
        ("embed.weight", 1, [(0, 2), (6, 8)]),
        ("embed.weight", -1, [(4, 8)]),
        ("layer.0.proj.weight", 0, [(6, 9), (0, 3)]),  # order is kept, not sorted
        ("layer.0.norm.weight", 0, [(4, 8)]),
        ("layer.1.mlp.experts.gate_up_proj", 0, [(1, 3)]),  # expert parallel
        ("layer.1.mlp.experts.gate_up_proj", 1, [(0, 3), (6, 9)]),  # this rank's gate rows, then its up rows
        ("layer.1.mlp.experts.gate_up_proj", 2, [(2, 4)]),
        ("layer.1.mlp.experts.down_proj", 2, [(3, 6)]),
    ],
)
def test_slices_equal_slices_of_the_full_tensor(layout, name, dim, ranges, request):
    model_dir = request.getfixturevalue(layout)
    full = _full(model_dir)[name]
    reader = CheckpointReader(model_dir)
    part = reader.read(name, dim=dim, ranges=ranges)

    expected = torch.cat([full.narrow(dim, start, stop - start) for start, stop in ranges], dim=dim)
    assert part.dtype == full.dtype and torch.equal(part, expected)
    assert reader.bytes_read == expected.nbytes < full.nbytes
    assert reader.reads == [(name, dim % full.ndim, ranges)]


def test_accounting_adds_up_over_reads(single_file):
    reader = CheckpointReader(single_file)
    reader.read("embed.weight", dim=0, ranges=[(0, 8)])
    reader.read("layer.1.mlp.experts.down_proj", dim=1, ranges=[(0, 4)])
    reader.shape("embed.weight")  # metadata reads nothing
    assert reader.bytes_read == 8 * 8 * 4 + 4 * 4 * 6 * 2
    assert [name for name, _, _ in reader.reads] == ["embed.weight", "layer.1.mlp.experts.down_proj"]


def test_dtype_and_device_conversion(single_file):
    reader = CheckpointReader(single_file)
    part = reader.read("layer.0.proj.weight", ranges=[(0, 4)], dtype=torch.float32, device="cpu")
    assert part.dtype == torch.float32
    assert torch.equal(part, _tensors()["layer.0.proj.weight"][:4].float())
    assert reader.bytes_read == 4 * 16 * 2  # accounted in the stored dtype


def test_missing_tensor_names_tensor_and_folder(single_file):
    reader = CheckpointReader(single_file)
    with pytest.raises(KeyError, match="lm_head.weight") as error:
        reader.read("lm_head.weight")
    assert str(single_file) in str(error.value)


def test_no_safetensors_names_the_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        CheckpointReader(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        CheckpointReader(tmp_path / "absent")


def test_index_naming_a_missing_shard(sharded):
    next(sharded.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00003.safetensors"):
        CheckpointReader(sharded)


def test_tensor_in_two_files_is_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, tmp_path / "a.safetensors")
    save_file({"w": torch.ones(2)}, tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match="'w' is in both"):
        CheckpointReader(tmp_path)


@pytest.mark.parametrize("dim, ranges", [(0, [(30, 33)]), (1, [(3, 2)]), (2, [(0, 1)]), (0, [])])
def test_bad_ranges_are_refused(single_file, dim, ranges):
    with pytest.raises(ValueError, match="embed.weight"):
        CheckpointReader(single_file).read("embed.weight", dim=dim, ranges=ranges)
