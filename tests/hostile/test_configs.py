"""Hostile configs: YAML that explodes, loops or hides bytes; numbers that are not numbers; sizes that cannot
fit; paths that leave the config's folder. Each is a config error (exit 2) with its line, found before
anything is built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import SMALL_UNET

# Nine levels of nine-fold aliases: 9**9 = 387 million values once expanded.
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def test_alias_bomb_is_refused_at_its_line(cli, write_config) -> None:
    # It used to grow by ~58 MB/s until killed. Expanded, a has 10 values, b 91, c 820, d 7381, e 66430:
    # f is where the count crosses the bound.
    r = cli("validate", str(write_config(ALIAS_BOMB))).expect(2, "expands to more than 100,000 values")
    assert ":6:1: /f:" in r.err


def test_recursive_alias_is_a_cycle_not_a_recursion_error(cli, write_config) -> None:
    cli("validate", str(write_config("name: a\nmodel: &m [*m]\n"))).expect(2, "exp.yaml:2:", "(a cycle)")


def test_nested_too_deeply(cli, write_config) -> None:
    deep = "name: x\nmodel:\n" + "".join("  " * i + f"  k{i}:\n" for i in range(80)) + "  " * 80 + "  v: 1\n"
    cli("validate", str(write_config(deep))).expect(2, "nested more than 64 levels deep")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: a\x00b\n", "exp.yaml:1:8: /: invalid YAML: character U+0000 is not allowed"),
        ("name: a\x07b\n", "character U+0007 is not allowed"),
        ("name: !!python/object/apply:os.system [echo hi]\n", "unsupported YAML"),
        ("", "the config is empty"),
        ("- a\n- b\n", "the config must be a mapping"),
        ("name: x\nname: y\n", "duplicate key 'name'"),
    ],
)
def test_bytes_and_shapes_yaml_does_not_allow(cli, write_config, text: str, message: str) -> None:
    cli("validate", str(write_config(text))).expect(2, message)


def test_config_that_is_not_utf8(cli, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    cli("validate", str(path)).expect(2, "cannot read config")


def test_oversized_config_is_not_read(cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write("name: x\ndescription: '")
        f.write("y" * (5 << 20))
        f.write("'\n")
    cli("validate", str(path)).expect(2, "a config may have at most 4,194,304")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("thresholds.rel_error=.nan", "/thresholds/rel_error: .nan is not a finite number"),
        ("thresholds.min_sqnr_db=-.inf", "/thresholds/min_sqnr_db: -.inf is not a finite number"),
        ("inputs.input.source.mean=.inf", "/inputs/input/source/mean: .inf is not a finite number"),
        ("thresholds.layers=[{match: '*', max_abs_error: .NaN}]", "/thresholds/layers/0/max_abs_error: .nan"),
        ("samples=1e400", "/samples: .inf is not a finite number"),
        ("description=.nan", "/description: .nan is not a finite number"),
    ],
)
def test_non_finite_numbers_are_rejected_everywhere(cli, write_config, override: str, message: str) -> None:
    r = cli("run", str(write_config()), "--set", override).expect(2, message)
    assert r.err.count("\n") <= 2  # one problem, said once (not also "is not of type" for the same value)


def test_non_finite_in_the_file_points_at_its_line(cli, write_config) -> None:
    path = write_config(SMALL_UNET.replace("rel_error: 0.1", "rel_error: .nan"))
    cli("validate", str(path)).expect(2, "exp.yaml:17:14: /thresholds/rel_error: .nan is not a finite number")
    # A valid config with the same digest-spelling ("nan" as a string where a string is fine) is no excuse:
    # the schema memo cannot tell .nan from "nan", so non-finite numbers are looked for every time.
    cli("validate", str(path)).expect(2, ".nan is not a finite number")


@pytest.mark.parametrize(
    "override",
    [
        "--set=x=&a [*a]",
        "--set=x=[&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a],"
        " &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c],"
        " [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]]",
        "--set=x=\x00",
    ],
)
def test_set_values_have_the_config_bounds(cli, write_config, override: str) -> None:
    cli("validate", str(write_config()), override).expect(2, "--set x=")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.options.base_channels=100000", "100000 is greater than the maximum of 512"),
        ("model.options.depth=60", "60 is greater than the maximum of 6"),
        ("inputs.input.shape=[1, 3, 99999999999999999999, 2]", "is greater than the maximum of 2147483647"),
    ],
)
def test_schema_bounds_come_before_building_anything(cli, write_config, isolated_cache, override, message) -> None:
    cli("run", str(write_config()), "--set", override).expect(2, message)
    assert not (isolated_cache / "v1" / "objects" / "build").exists()  # nothing was built


def test_input_too_large_for_memory_is_refused_before_running(cli, write_config, isolated_cache) -> None:
    big = "inputs.input.shape=[1, 3, 100000, 100000]"  # used to pass validate, then MemoryError: 224 GiB at dump
    r = cli("validate", str(write_config()), "--set", big)
    r.expect(2, "this experiment needs ~", "of memory per stage", "one sample's inputs 111.8 GiB", "is available")
    cli("run", str(write_config()), "--set", big).expect(2, "of memory per stage")
    assert not (isolated_cache / "v1" / "objects" / "dump").exists()


def test_dumps_too_large_for_the_disk_are_refused_with_the_free_space(cli, write_config, isolated_cache) -> None:
    # 2048x2048 inputs fit in memory (~1 GiB per stage) but 100000 samples of dumps fit on no test machine.
    path = write_config()
    sets = ["--set", "inputs.input.shape=[1, 3, 2048, 2048]", "--set", "samples=100000"]
    r = cli("run", str(path), *sets).expect(2, "the dumps of this experiment need ~", "is free there")
    assert "100000 samples" in r.err
    assert not (isolated_cache / "v1" / "objects" / "dump").exists()


def test_validate_states_the_estimate(cli, write_config) -> None:
    r = cli("validate", str(write_config())).expect(0, "of memory per stage and ~")
    assert "KiB of disk" in r.out


# -- paths a config names ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model", "../outside.onnx"),
        ("inputs.input.source", "{file: ../x.npy}"),
        ("cache.dir", "../../cache-elsewhere"),
        ("report.dir", "../../../reports-elsewhere"),
    ],
)
def test_relative_paths_stay_inside_their_folder(
    cli, write_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    import numpy as np

    from tests.models import chain_model

    if key == "cache.dir":
        monkeypatch.delenv("LAYERSCOPE_CACHE_DIR")  # else the environment's cache wins over cache.dir
    chain_model(tmp_path / "outside.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 3, 16, 16), np.float32))
    r = cli("validate", str(write_config()), "--set", f"{key}={value}")
    r.expect(2, "outside")
    assert "write an absolute path" in r.err or "relative to the working directory" in r.err


def test_a_link_out_of_the_config_folder_is_outside_too(cli, write_config, tmp_path: Path) -> None:
    from tests.models import chain_model

    chain_model(tmp_path / "elsewhere.onnx")
    path = write_config()
    os.symlink(tmp_path / "elsewhere.onnx", path.parent / "model.onnx")
    cli("validate", str(path), "--set", "model=model.onnx").expect(2, "elsewhere.onnx, outside")


def test_an_absolute_path_is_the_users_explicit_choice(cli, write_config, tmp_path: Path) -> None:
    from tests.models import chain_model

    model = chain_model(tmp_path / "abs.onnx")
    text = """\
        name: abs
        model: MODEL
        inputs:
          input: {shape: [1, 4, 8, 8], source: {random: normal}}
        runs: {fp32: {precision: fp32}, fp16: {precision: fp16}}
    """.replace("MODEL", str(model))
    cli("validate", str(write_config(text))).expect(0, "valid")


def test_yaml_dates_are_strings_and_other_types_are_refused(cli, write_config) -> None:
    """Found by the fuzz test: YAML 1.1 reads 2001-01-01 as a date, which reached the config digest (exit 3)."""
    cli("validate", str(write_config()), "--set", "name=2001-01-01").expect(0, "valid")
    cli("validate", str(write_config()), "--set", "description=!!binary aGk=").expect(2, "is not allowed")
    path = write_config(SMALL_UNET + "description: !!timestamp 2001-01-01\n")
    cli("validate", str(path)).expect(2, "exp.yaml:19:14: /: unsupported YAML: tag", "is not allowed")


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_inputs_far_beyond_the_formats_range(cli, chain, precision: str) -> None:
    """Found by the fuzz test: values beyond FP16's range made the attribution's cast warn, which failed the stage
    where warnings are errors. Overflow to inf is what the candidate computes, and what the report measures."""
    config = chain()
    sets = ["--set", "inputs.input.source.mean=2147483648", "--set", f"runs.fp16.precision={precision}"]
    r = cli("run", str(config), "-q", "--out", "o", *sets)
    assert r.code in (0, 1), r.err
    r.assert_clean()
