"""Heatmap file names of ``inspector score`` (evaluation/score.py): unique, readable, stable."""

from __future__ import annotations

from inspector.evaluation.score import heatmap_names


def test_names_follow_the_path_relative_to_the_common_folder(tmp_path):
    paths = [str(tmp_path / "test" / "hole" / "000.png"), str(tmp_path / "test" / "scratch" / "000.png"),
             str(tmp_path / "test" / "scratch" / "000.jpg"), str(tmp_path / "test" / "hole" / "000.png")]
    names = heatmap_names(paths)
    assert names[paths[0]] == "hole__000_heatmap.png" and names[paths[1]] == "scratch__000_heatmap.png"
    assert names[paths[2]] == "scratch__000_jpg_heatmap.png"
    assert len(set(names.values())) == 3                       # a repeated path keeps its one name


def test_one_folder_keeps_plain_stems(tmp_path):
    paths = [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    assert heatmap_names(paths) == {paths[0]: "a_heatmap.png", paths[1]: "b_heatmap.png"}
