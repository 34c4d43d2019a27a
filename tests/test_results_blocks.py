"""README results blocks: written from the tables a demo saved (common.report), and every committed block current."""

import json
import math

import pytest

import reproduce
from common.report import blocks, markdown_table, table_from_file, update_blocks, write_report


def test_named_tables_are_saved_and_blocks_rewritten_from_them(tmp_path):
    rows = [{"config": "fs", "mean": 0.74886, "std": math.nan, "n": 3}, {"config": "size", "mean": 0.5, "n": 3}]
    table = markdown_table(rows, ["config", "mean", "std", "n"], name="dice")
    write_report(tmp_path / "demo", "A demo", ["text", table, markdown_table(rows)])  # the unnamed one is not saved
    saved = json.loads((tmp_path / "demo" / "tables.json").read_text())
    assert list(saved) == ["dice"] and saved["dice"]["rows"][0] == {"config": "fs", "mean": 0.74886, "std": "n/a",
                                                                     "n": 3}
    assert table_from_file(tmp_path, "demo", "dice") == table  # the file renders the table the report shows
    assert "| fs | 0.749 | n/a | 3 |" in table and "| size | 0.500 |  | 3 |" in table
    readme = "# Demo\n\n<!-- results:demo/dice -->\n| typed | 0.9 |\n<!-- /results -->\n\nafter\n"
    new = update_blocks(readme, tmp_path)
    assert new == f"# Demo\n\n<!-- results:demo/dice -->\n{table}<!-- /results -->\n\nafter\n"
    assert update_blocks(new, tmp_path) == new and blocks(new) == [("demo", "dice", table)]
    with pytest.raises(KeyError, match="has no table 'nope'"):
        update_blocks("<!-- results:demo/nope -->\n<!-- /results -->", tmp_path)
    with pytest.raises(KeyError, match="does not exist"):
        update_blocks("<!-- results:other/dice -->\n<!-- /results -->", tmp_path)


@pytest.mark.parametrize("readme", reproduce.readmes(), ids=lambda p: str(p.relative_to(reproduce.ROOT)))
def test_every_committed_block_equals_its_results_file(readme):
    for demo, table, body in blocks(readme.read_text()):
        assert body == table_from_file(reproduce.ROOT / "results", demo, table), (
            f"{readme}: block {demo}/{table} differs from results/{demo}/tables.json; run python reproduce.py --tables")


def test_at_least_the_top_readme_cites_generated_results():
    assert blocks((reproduce.ROOT / "README.md").read_text()), "README.md shows no generated results"
