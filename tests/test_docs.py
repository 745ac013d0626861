from scripts import docs_tables
from shared.config import environment_variables
from shared.metrics import CATALOGUE


def test_readme_tables_match_settings_and_catalogue() -> None:
    text = docs_tables.README.read_text()
    assert docs_tables.main(["--check"]) == 0, "run: python -m scripts.docs_tables"
    for variable in environment_variables():
        assert f"`{variable}`" in text
    for name in CATALOGUE:
        assert f"`{name}`" in text
