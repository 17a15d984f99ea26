from __future__ import annotations

from pathlib import Path

import pytest

from recommend.offline.movielens import load_movie_genres, load_movielens
from recommend.types import RecommendError


@pytest.fixture
def fake_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ds = tmp_path / "ml-latest-small"
    ds.mkdir()
    (ds / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,5.0,1260759179\n"
        "2,31,0.5,1260759200\n",
        encoding="utf-8",
    )
    (ds / "movies.csv").write_text(
        'movieId,title,genres\n31,"Dangerous Minds (1995)",Drama\n1029,Dumbo (1941),'
        "Animation|Children|Drama|Musical\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("TAILOR_DATASETS_DIR", str(tmp_path))
    return tmp_path


def test_every_rating_is_one_implicit_interaction(fake_data_dir: Path) -> None:
    data = load_movielens()
    assert data.user_ids == ("1", "2")
    assert data.item_ids == ("31", "1029")
    # weight 1 whatever the star rating
    assert data.user_items("1") == {"31": 1.0, "1029": 1.0}
    assert data.user_items("2") == {"31": 1.0}
    assert sorted(data.timestamps.tolist()) == [1260759144.0, 1260759179.0, 1260759200.0]


def test_genres(fake_data_dir: Path) -> None:
    assert load_movie_genres()["1029"] == ["Animation", "Children", "Drama", "Musical"]


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecommendError, match="TAILOR_DATASETS_DIR") as err:
        load_movielens(tmp_path)
    assert str(tmp_path / "ml-latest-small") in str(err.value)  # the path it looked at


def test_the_gateway_state_dir_is_not_the_datasets_dir(
    fake_data_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path_factory.mktemp("empty")
    monkeypatch.setenv("TAILOR_DATASETS_DIR", str(empty))
    monkeypatch.setenv("TAILOR_DATA_DIR", str(fake_data_dir))  # the gateway's state dir: ignored
    with pytest.raises(RecommendError, match="TAILOR_DATASETS_DIR") as err:
        load_movielens()
    assert str(empty.resolve() / "ml-latest-small") in str(err.value)
